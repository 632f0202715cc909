# Job launchers, Kaldi style. Every parallel step runs
#     $train_cmd [--num-threads N] [--mem X] [--gpu N] [--max-jobs-run K] JOB=1:N log/x.JOB.log command ...
# Pick a backend by editing the two lines below (or exporting the variables before running run.sh):
#   run.py      local parallel processes (default; bounded by --max-jobs-run or the core count)
#   slurm.py    a SLURM array job per call (sbatch --array ... --wait); options mapped by conf/slurm.conf
export train_cmd=${train_cmd:-"run.py"}
export cuda_cmd=${cuda_cmd:-"run.py --gpu 1"}
# On a SLURM cluster:
# export train_cmd="slurm.py --mem 4G"
# export cuda_cmd="slurm.py --gpu 1 --mem 16G"
