#!/usr/bin/env bash
# Clustering-based self-supervised speaker verification: the recipe.
#
#   ./run.sh                                  every stage that exists, on the embedded demo corpus
#   ./run.sh --stage 1 --stop-stage 1         one stage
#   ./run.sh --corpus speechocean762 --corpus-dir ../shared/data/speechocean762-train
#   ./run.sh --help                           stages and options
#
# Every variable in the defaults block below can be set on the command line as --name value.
set -euo pipefail
cd "$(dirname "$0")"
_run_command="./run.sh${*:+$(printf ' %q' "$@")}"   # as typed, for the report to name

# ---- defaults -------------------------------------------------------------------------------------
stage=0                 # first stage to run
stop_stage=10           # last stage to run (10, the report, is the last)
corpus=demo             # demo | speechocean762 | voxceleb | dir
corpus_dir=             # source of the corpus (demo: where its audio is synthesised, default corpora/demo)
name=                   # data set prefix (default: the corpus name); sets are <name>_train, <name>_test
vox1_dir=               # voxceleb: VoxCeleb1 root (default <corpus-dir>/voxceleb1)
vox2_dir=               # voxceleb: VoxCeleb2 root (default <corpus-dir>/voxceleb2, used when it exists)
num_test_spk=           # speechocean762 / dir: test speakers split off by seed (default: the script's)
seed=0                  # seed of every random stage (corpus synthesis, speaker split, UBM, clustering, network)
nj=$(nproc 2>/dev/null || echo 4)   # parallel jobs for the split stages
device=auto             # auto | cpu | cuda | cuda:N (torch stages)
data=data               # where data dirs are written
exp=                    # where models, logs and results are written (default exp/<name>)
mfcc_dir=mfcc           # where feature archives are written
mfcc_config=conf/mfcc.conf
vad_config=conf/vad.conf
compress=false          # store features compressed as Kaldi does (lossy; see steps/make_mfcc.sh)
augment=true            # stage 2: augmented copies of the training set (CAMSAT's views)
aug_types=noise,babble,reverb   # stage 2: augmentation types (steps/augment_data_dir.sh --types)
ivector_config=conf/ivector.yaml   # stages 3-5: UBM / extractor / back-end sizes (VoxCeleb: conf/ivector_voxceleb.yaml)
cluster_method=camsat   # stage 6: conf/cluster/<method>.yaml (pyscripts/cluster.py --list)
cluster_config=         # stage 6: a config file instead of conf/cluster/<method>.yaml
cluster_opts=           # stage 6: parameter overrides, e.g. "steps=1000 n_init=3"
num_clusters=           # stage 6: C (default: the number of training speakers, as the papers' C = 5994)
cluster_tag=            # stages 6-9: name of the pseudo-label set (default <method>_c<C>)
cluster_views=true      # stage 6: give the method the augmented-audio i-vectors of stage 5 as views
cluster_input=          # stage 6: what round 1 clusters: [the i-vectors] | ssl | a vector dir (with --cluster-tag)
rounds=1                # stages 6-9: rounds of pseudo labels; round r >= 2 clusters round r - 1's embeddings
min_cluster_size=2      # stage 7: clusters with fewer utterances are dropped
embed_config=conf/embed/ecapa_xs.yaml   # stages 8-9: network, head, mixup, augmentation, optimiser (conf/embed/)
embed_head=             # stage 8: head instead of the config's: softmax | am | cosface | aam | ocsoftmax | adaface
embed_mixup=            # stage 8: none | imix | lmix (instead of the config's)
embed_mixup_alpha=      # stage 8: mixup Beta(alpha, alpha) parameter (instead of the config's)
embed_opts=             # stage 8: more config overrides, e.g. "train.epochs=30 augment.spec_aug=true"
embed_nproc=1           # stage 8: processes (GPUs); more than 1 trains with torchrun / DDP
supervised=false        # stages 8-9: also train and score the supervised reference (true training labels)
ssl=none                # stages 7-9: none | also | only: the label-free contrastive network (NT-Xent-AM)
ssl_config=conf/embed/simclr_xs.yaml   # stages 8-9: its config (a label-free head: head.name ntxent)
ssl_opts=               # stage 8: its overrides, e.g. "head.margin=0 head.symmetric=false" (plain NT-Xent)
top_n=300               # stage 9: AS-norm cohort top-N (capped at the cohort size)
study=                  # stage 10: the study grid (conf/study/*.yaml) whose cells not yet run are listed
report_dir=             # stage 10: where RESULTS.md and the figures go (default <exp>/report)
help_message=$(cat <<HELP
Usage: ./run.sh [options]
Stages (run from --stage to --stop-stage):
  0  data preparation: data/<name>_{train,test}/{wav.scp,utt2spk,spk2utt,utt2dur}, data/<name>_test/trials
  1  MFCC (Kaldi compute-mfcc-feats, conf/mfcc.conf) and energy VAD (compute-vad, conf/vad.conf)
     -> feats.scp, vad.scp, utt2num_frames
  2  augmentation of the training set (noise, babble, reverberation) + its MFCC/VAD -> data/<name>_train_aug
  3  diagonal then full-covariance UBM -> exp/<name>/diag_ubm/final.dubm, exp/<name>/full_ubm/final.ubm
  4  i-vector extractor (Kaldi's augmented formulation) -> exp/<name>/extractor/final.ie
  5  i-vectors of train, train_aug and test -> exp/<name>/ivectors_<set>/ivector.scp; i-vector baseline on
     the trials: cosine (unsupervised), LDA+PLDA (supervised back end) -> exp/<name>/scores/*/result.json
  6  clustering of the training i-vectors -> exp/<name>/cluster/<method>_c<C>/{labels,metrics.json,curve.tsv}
     (true labels read for the evaluation metrics only); stages 6-9 repeat for --rounds N
  7  pseudo-label data dir -> data/<name>_train_pl_<method>_c<C> (utt2spk = clusters); with --ssl:
     data/<name>_train_ssl (utt2spk = the utterance itself)
  8  ECAPA-TDNN trained on the pseudo labels (and on the true labels with --supervised true, without
     labels with --ssl also|only: NT-Xent-AM, conf/embed/simclr_xs.yaml)
     -> exp/<name>/embed/<labels>_<config>_<head>[_<mixup><alpha>]/{final.pt,train_log.tsv}
  9  embeddings of train and test, cosine (mean subtracted) and AS-norm scoring of the trials
     -> exp/<name>/embed/<system>/scores/{cosine,asnorm}/result.json
  10 report from everything under exp/<name>: Table I, margin-loss and regulariser tables, correlation
     heatmaps, clustering curves -> <report-dir>/RESULTS.md and <report-dir>/*.png
Options (default in brackets):
  --stage N            [$stage]         --stop-stage M        [$stop_stage]
  --corpus NAME        [$corpus]      demo | speechocean762 | voxceleb | dir
  --corpus-dir DIR     [$corpus_dir]  corpus source (required for speechocean762 and dir)
  --name PREFIX        [corpus name]  data set prefix
  --vox1-dir DIR / --vox2-dir DIR   VoxCeleb roots (voxceleb)
  --num-test-spk N     [script default] test speakers split off (speechocean762, dir)
  --seed N             [$seed]  every random stage; N != 0 names clusterings and networks <...>_sN
                       (--stage 6 --seed N: new clusterings and networks on the same data and i-vectors)
  --nj N               [$nj]         parallel jobs
  --device D           [$device]      auto | cpu | cuda | cuda:N
  --data DIR [$data]  --exp DIR [exp/<name>]  --mfcc-dir DIR [$mfcc_dir]
  --mfcc-config F      [$mfcc_config]  --vad-config F [$vad_config]
  --compress BOOL      [$compress]     store features compressed, as Kaldi's make_mfcc.sh
  --augment BOOL       [$augment]      stage 2 on/off     --aug-types LIST [$aug_types]
  --ivector-config F   [$ivector_config]
  --cluster-method M   [$cluster_method]   --num-clusters C [number of training speakers]
  --cluster-config F   [conf/cluster/<method>.yaml]   --cluster-opts 'K=V ...' [$cluster_opts]
  --cluster-tag NAME   [<method>_c<C>[_sN]]  name of the pseudo-label set (e.g. kmeans_standard_c48)
  --cluster-views BOOL [$cluster_views]     --min-cluster-size N [$min_cluster_size]
  --cluster-input V    [exp/<name>/ivectors_<name>_train]  vectors of round 1: ssl (the label-free
                       network's training embeddings, sets named <method>_c<C>_ssl) or a vector dir
                       (ivector.scp / xvector.scp / embedding.scp; name the sets with --cluster-tag)
  --rounds N           [$rounds]  stages 6-9 N times: round r >= 2 clusters the training embeddings of round
                       r - 1's network -> <method>_c<C>_r<r> (data/<name>_train_pl_..._r<r>, its network)
  --embed-config F     [$embed_config]   --embed-opts 'S.K=V ...' [$embed_opts]
  --embed-head H       [config's]  softmax | am | cosface | aam | ocsoftmax | adaface
  --embed-mixup M      [config's]  none | imix | lmix    --embed-mixup-alpha A [config's]
  --embed-nproc N      [$embed_nproc]   processes/GPUs (N > 1: torchrun DDP)
  --supervised BOOL    [$supervised]  also the supervised reference (true labels)
  --ssl none|also|only [$ssl]  stages 7-9: also / only the contrastive network trained without labels
                       (data/<name>_train_ssl, every utterance its own instance; needs stages 0-2 only)
  --ssl-config F       [$ssl_config]   --ssl-opts 'S.K=V ...' [$ssl_opts]
  --top-n N            [$top_n]   AS-norm top-N
  --study FILE         [none]  stage 10: study grid, for the cells not yet run
  --report-dir DIR     [<exp>/report]  stage 10: RESULTS.md and figures
Jobs run through \$train_cmd / \$cuda_cmd from cmd.sh (local processes by default, or SLURM).
HELP
)
. utils/parse_options.sh
[ $# -eq 0 ] || { echo "$0: unexpected argument '$1' (see --help)" >&2; exit 1; }
last_stage=10
for _opt in stage stop_stage; do
  [[ ${!_opt} =~ ^([0-9]|[1-9][0-9]*)$ ]] && [ "${!_opt}" -le $last_stage ] ||
    { echo "$0: --${_opt//_/-} must be a stage number from 0 to $last_stage, got '${!_opt}'" >&2; exit 1; }
done
[ "$stage" -le "$stop_stage" ] ||
  { echo "$0: --stage $stage is after --stop-stage $stop_stage: no stage to run" >&2; exit 1; }
[ -z "$num_clusters" ] || { [[ $num_clusters =~ ^[1-9][0-9]*$ ]] && [ "$num_clusters" -ge 2 ]; } ||
  { echo "$0: --num-clusters must be an integer >= 2, got '$num_clusters'" >&2; exit 1; }
[[ $device =~ ^(auto|cpu|cuda|cuda:[0-9]+)$ ]] ||
  { echo "$0: --device must be auto, cpu, cuda or cuda:N, got '$device'" >&2; exit 1; }

name=${name:-$corpus}
exp=${exp:-exp/$name}
train_set=${name}_train
test_set=${name}_test

log() { echo "$(date '+%F %T') run.sh: $*"; }
in_stages() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

# ---- environment: virtualenv with pinned packages, external tools ----------------------------------
tools=(sox)
case $corpus in
  demo) tools+=(flite espeak-ng) ;;
  voxceleb) tools+=(ffmpeg) ;;
  speechocean762|dir) ;;
  *) echo "$0: unknown --corpus '$corpus' (demo | speechocean762 | voxceleb | dir)" >&2; exit 1 ;;
esac
utils/setup_env.sh "${tools[@]}"
. ./path.sh
. ./cmd.sh
if [[ $device == cuda* ]]; then   # a GPU this machine lacks is one line now, not a traceback in a stage's log
  _err=$(python3 -m sslsv.device "$device" 2>&1) || { echo "$0: $_err" >&2; exit 1; }
fi

# ---- stage 0: data preparation ---------------------------------------------------------------------
# Stage 0 is skipped when its options and the corpus source are unchanged and its outputs exist (later
# stages may legitimately edit the data dirs, e.g. fix_data_dir.sh, so their content is not compared).
[ "$corpus" = demo ] && corpus_dir=${corpus_dir:-corpora/demo}
stage0_stamp=$data/.stage0_$name.stamp
stage0_opts="corpus=$corpus dir=$corpus_dir name=$name vox1=$vox1_dir vox2=$vox2_dir test=$num_test_spk seed=$seed"
stage0_done() {
  local f
  for f in $data/$train_set/{wav.scp,utt2spk,spk2utt} $data/$test_set/{wav.scp,utt2spk,spk2utt,trials}; do
    [ -s "$f" ] || return 1
  done
  stamp.py check "$stage0_stamp" ${corpus_dir:+"$corpus_dir"} --opts "$stage0_opts"
}
if in_stages 0 && stage0_done; then
  log "stage 0: $data/$train_set and $data/$test_set are up to date ($stage0_stamp); skipping"
elif in_stages 0; then
  log "stage 0: data preparation ($corpus -> $data/$train_set, $data/$test_set)"
  test_opt=()
  [ -n "$num_test_spk" ] && test_opt=(--num-test-spk "$num_test_spk")
  case $corpus in
    demo)
      local/make_demo_corpus.sh --nj "$nj" --seed "$seed" --name "$name" "$corpus_dir" "$data" ;;
    speechocean762)
      [ -n "$corpus_dir" ] || { echo "$0: --corpus speechocean762 needs --corpus-dir" >&2; exit 1; }
      local/prepare_speechocean762.sh --name "$name" --seed "$seed" "${test_opt[@]}" "$corpus_dir" "$data" ;;
    voxceleb)
      vox1_dir=${vox1_dir:-$corpus_dir/voxceleb1}
      vox2_dir=${vox2_dir:-$corpus_dir/voxceleb2}
      vox2_opt=()   # VoxCeleb2 is optional with the Vox1-O list (training on Vox1 dev alone)
      [ -d "$vox2_dir" ] && vox2_opt=(--vox2 "$vox2_dir")
      local/prepare_voxceleb.sh --name "$name" --nj "$nj" --vox1 "$vox1_dir" "${vox2_opt[@]}" "$data" ;;
    dir)
      [ -n "$corpus_dir" ] || { echo "$0: --corpus dir needs --corpus-dir" >&2; exit 1; }
      local/prepare_dir_corpus.sh --seed "$seed" "${test_opt[@]}" "$corpus_dir" "$data" "$name" ;;
  esac
  for set in $train_set $test_set; do
    utils/validate_data_dir.sh --no-feats "$data/$set"
  done
  stamp.py write "$stage0_stamp" ${corpus_dir:+"$corpus_dir"} --opts "$stage0_opts"
fi

# ---- stage 1: MFCC and energy VAD ------------------------------------------------------------------
if in_stages 1; then
  for set in $train_set $test_set; do
    log "stage 1: MFCC and VAD for $data/$set"
    steps/make_mfcc.sh --nj "$nj" --cmd "$train_cmd" --mfcc-config "$mfcc_config" --compress "$compress" \
      "$data/$set" "$exp/make_mfcc/$set" "$mfcc_dir"
    steps/compute_vad.sh --nj "$nj" --cmd "$train_cmd" --vad-config "$vad_config" \
      "$data/$set" "$exp/make_vad/$set" "$mfcc_dir"
    utils/fix_data_dir.sh "$data/$set"
  done
fi

# ---- stage 2: augmentation of the training set -----------------------------------------------------
if in_stages 2 && [ "$augment" = true ]; then
  log "stage 2: augmented copies of $data/$train_set ($aug_types)"
  steps/augment_data_dir.sh --nj "$nj" --cmd "$train_cmd" --seed "$seed" --types "$aug_types" \
    "$data/$train_set" "$data/${train_set}_aug"
  steps/make_mfcc.sh --nj "$nj" --cmd "$train_cmd" --mfcc-config "$mfcc_config" --compress "$compress" \
    "$data/${train_set}_aug" "$exp/make_mfcc/${train_set}_aug" "$mfcc_dir"
  steps/compute_vad.sh --nj "$nj" --cmd "$train_cmd" --vad-config "$vad_config" \
    "$data/${train_set}_aug" "$exp/make_vad/${train_set}_aug" "$mfcc_dir"
  utils/fix_data_dir.sh "$data/${train_set}_aug"
fi

# ---- stage 3: UBM ----------------------------------------------------------------------------------
if in_stages 3; then
  log "stage 3: diagonal and full-covariance UBM on $data/$train_set ($ivector_config)"
  steps/train_diag_ubm.sh --nj "$nj" --cmd "$train_cmd" --device "$device" --config "$ivector_config" \
    --seed "$seed" "$data/$train_set" "$exp/diag_ubm"
  steps/train_full_ubm.sh --nj "$nj" --cmd "$train_cmd" --device "$device" --config "$ivector_config" \
    "$data/$train_set" "$exp/diag_ubm" "$exp/full_ubm"
fi

# ---- stage 4: i-vector extractor -------------------------------------------------------------------
if in_stages 4; then
  log "stage 4: i-vector extractor on $data/$train_set"
  steps/train_ivector_extractor.sh --nj "$nj" --cmd "$train_cmd" --device "$device" \
    --config "$ivector_config" --seed "$seed" "$exp/full_ubm" "$data/$train_set" "$exp/extractor"
fi

# ---- stage 5: i-vectors and the i-vector baseline --------------------------------------------------
if in_stages 5; then
  sets="$train_set $test_set"
  [ "$augment" = true ] && [ -f "$data/${train_set}_aug/feats.scp" ] && sets="$sets ${train_set}_aug"
  for set in $sets; do
    log "stage 5: i-vectors of $data/$set"
    steps/extract_ivectors.sh --nj "$nj" --cmd "$train_cmd" --device "$device" \
      "$exp/extractor" "$data/$set" "$exp/ivectors_$set"
  done
  log "stage 5: i-vector baseline on $data/$test_set/trials"
  steps/score_cosine.sh --mean-scp "$exp/ivectors_$train_set/ivector.scp" \
    "$data/$test_set/trials" "$exp/ivectors_$test_set/ivector.scp" "$exp/scores/ivector_cosine"
  steps/score_plda.sh --config "$ivector_config" --label "supervised back end (true training labels)" \
    "$exp/ivectors_$train_set/ivector.scp" "$data/$train_set/utt2spk" "$data/$test_set/trials" \
    "$exp/ivectors_$test_set/ivector.scp" "$exp/scores/ivector_plda_supervised"
fi

# ---- stages 6-9: pseudo labels, networks, scoring; the label-free network; rounds -------------------
# C defaults to the number of training speakers (the papers' C = 5994 on VoxCeleb2): the only thing the
# unsupervised stages take from the labels, besides the evaluation metrics written next to the labels.
# The names of the pseudo-label set and its networks come from sslsv.naming:
# <method>[_c<C>][_<source>][_r<round>][_sN], where a method that finds the number of clusters itself
# (hdbscan) has no C, <source> names vectors other than the i-vectors (ssl), round r >= 2 clusters the
# training embeddings of round r - 1's network, and another --seed is another name (seed 0 keeps the
# plain one; the seed is also in metrics.json / config.yaml). A --cluster-tag replaces <method>[_c<C>].
if [ -z "$num_clusters" ] && [ -f "$data/$train_set/spk2utt" ]; then
  num_clusters=$(wc -l < "$data/$train_set/spk2utt")
fi
num_clusters_opt=()
case $ssl in none|also|only) ;; *) echo "$0: --ssl must be none, also or only, got '$ssl'" >&2; exit 1;; esac
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "$0: --rounds must be an integer >= 1, got '$rounds'" >&2; exit 1; }
clusters=true           # --ssl only: no clustering system (stages 6-7 make nothing but the ssl data dir)
[ "$ssl" = only ] && clusters=false
if [ "$ssl" = only ] && { [ "$rounds" != 1 ] || [ -n "$cluster_input" ]; }; then
  echo "$0: --ssl only makes no pseudo labels; --rounds and --cluster-input need --ssl none or also" >&2; exit 1
fi

# A system is a label source (the pseudo labels of stage 7, "supervised" = the true labels, or "ssl" = no
# labels) trained with one config; its name says which: <labels>_<config>_<head>[_<mixup><alpha>].
embed_set=()
[ -n "$embed_head" ] && embed_set+=("head.name=$embed_head")
[ -n "$embed_mixup" ] && embed_set+=("mixup.kind=$embed_mixup")
[ -n "$embed_mixup_alpha" ] && embed_set+=("mixup.alpha=$embed_mixup_alpha")
[ "$seed" != 0 ] && embed_set+=("train.seed=$seed")   # the config's seed (0) unless --seed says otherwise
embed_set_opts="${embed_set[*]}"
[ -n "$embed_opts" ] && embed_set_opts="${embed_set_opts:+$embed_set_opts }$embed_opts"
# The contrastive network has its own config and overrides (--ssl-config, --ssl-opts) and the seed.
ssl_set_opts=
[ "$seed" != 0 ] && ssl_set_opts="train.seed=$seed"
[ -n "$ssl_opts" ] && ssl_set_opts="${ssl_set_opts:+$ssl_set_opts }$ssl_opts"
network_tag() {         # <config> <overrides> -> the name part a network takes from its config
  python3 -m sslsv.naming network-tag --seed "$seed" "$1" "$2"
}
ssl_system=             # <labels>|<data dir>|<config>|<overrides>, as every system below
ssl_emb=                # the label-free network's training-set embeddings (stage 9)
if [ "$ssl" != none ] || [ "$cluster_input" = ssl ]; then
  ssl_system="ssl|$data/${train_set}_ssl|$ssl_config|$ssl_set_opts"
  ssl_emb=$exp/embed/ssl_$(network_tag "$ssl_config" "$ssl_set_opts")/emb_$train_set
fi

# What round 1 clusters: the i-vectors, the label-free network's embeddings (--cluster-input ssl), or any
# vector dir (then --cluster-tag names the set).
source_word=
case $cluster_input in
  "") cluster_input=$exp/ivectors_$train_set ;;
  ssl) cluster_input=$ssl_emb; source_word=ssl ;;
  *) [ -n "$cluster_tag" ] ||
       { echo "$0: --cluster-input $cluster_input needs --cluster-tag to name its pseudo-label sets" >&2; exit 1; } ;;
esac
round_tags=()           # round_tags[r - 1]: the pseudo-label set of round r
any_of_6_to_9=false
{ in_stages 6 || in_stages 7 || in_stages 8 || in_stages 9; } && any_of_6_to_9=true
if [ "$clusters" = true ] && [ "$any_of_6_to_9" = true ]; then
  # asked of the config stage 6 will read: --cluster-config when given, else conf/cluster/<method>.yaml
  read -r _ takes_c < <(python3 -m sslsv.cluster takes-c ${cluster_config:+--conf-dir "$(dirname "$cluster_config")"} \
    "$(basename "${cluster_config:-$cluster_method}" .yaml)" 2>/dev/null) ||
    { echo "$0: unknown --cluster-method '$cluster_method'${cluster_config:+ or bad --cluster-config $cluster_config}" \
        "(python3 -m sslsv.cluster methods lists them)" >&2; exit 1; }
  [ "$takes_c" = yes ] && [ -n "$num_clusters" ] && num_clusters_opt=(--num-clusters "$num_clusters")
  for r in $(seq "$rounds"); do
    if [ -n "$cluster_tag" ]; then
      round_tags+=("$(python3 -m sslsv.naming cluster-tag --tag "$cluster_tag" --round "$r" --seed "$seed")")
    else
      round_tags+=("$(python3 -m sslsv.naming cluster-tag --method "$cluster_method" "${num_clusters_opt[@]}" \
        ${source_word:+--source "$source_word"} --round "$r" --seed "$seed")")
    fi
  done
  embed_tag=$(network_tag "$embed_config" "$embed_set_opts")
  # A later round's input is made by stage 9 of the round before: present already, or made in this run.
  if [ "$rounds" -gt 1 ] && in_stages 6 && ! { in_stages 8 && in_stages 9; } &&
     [ ! -f "$exp/embed/${round_tags[rounds - 2]}_$embed_tag/emb_$train_set/xvector.scp" ]; then
    echo "$0: round $rounds clusters the embeddings of round $((rounds - 1))'s network" \
      "($exp/embed/${round_tags[rounds - 2]}_$embed_tag/emb_$train_set), which stages 8-9 have not made:" \
      "run them too (--stop-stage 9)" >&2
    exit 1
  fi
fi

train_system() {        # stage 8 then stage 9 of one system "<labels>|<data dir>|<config>|<overrides>"
  local labels sdata sconfig sopts name edir
  IFS='|' read -r labels sdata sconfig sopts <<< "$1"
  name=${labels}_$(network_tag "$sconfig" "$sopts")
  edir=$exp/embed/$name
  if in_stages 8; then
    log "stage 8: ECAPA-TDNN on $sdata ($sconfig${sopts:+; $sopts}) -> $edir"
    steps/train_embedding.sh --cmd "$cuda_cmd" --config "$sconfig" --set-opts "$sopts" \
      --device "$device" --nproc "$embed_nproc" "$sdata" "$edir"
  fi
  if in_stages 9; then
    log "stage 9: embeddings and scoring of $edir"
    for set in "$train_set" "$test_set"; do
      steps/extract_embeddings.sh --nj "$nj" --cmd "$train_cmd" --device "$device" \
        "$edir/final.pt" "$data/$set" "$edir/emb_$set"
    done
    # The cohort of AS-norm is the training set's (pseudo-)speaker means: the labels the network used.
    steps/score_trials.sh --utt2spk "$sdata/utt2spk" --top-n "$top_n" --label "$name" \
      "$data/$test_set/trials" "$edir/emb_$train_set" "$edir/emb_$test_set" "$edir/scores"
  fi
}

# The label-free network first: it needs stages 0-2 only, and --cluster-input ssl clusters its embeddings.
if [ -n "$ssl_system" ] && [ "$any_of_6_to_9" = true ]; then
  if in_stages 7; then
    # Every training utterance is its own instance: the data dir names it as a speaker, so that nothing
    # the network or the AS-norm cohort of stage 9 read changes; written as a pseudo-label set named "ssl".
    log "stage 7: instance-label data dir $data/${train_set}_ssl"
    mkdir -p "$exp/ssl"
    awk '{print $1, NR - 1}' "$data/$train_set/utt2spk" > "$exp/ssl/labels.new"
    if cmp -s "$exp/ssl/labels.new" "$exp/ssl/labels"; then rm "$exp/ssl/labels.new"
    else mv "$exp/ssl/labels.new" "$exp/ssl/labels"; fi
    steps/make_pseudo_label_dir.sh --min-cluster-size 1 "$data/$train_set" "$exp/ssl" "$data/${train_set}_ssl"
  fi
  train_system "$ssl_system"
fi

if [ "$clusters" = true ] && [ "$any_of_6_to_9" = true ]; then
  [ "$supervised" = true ] && train_system "supervised|$data/$train_set|$embed_config|$embed_set_opts"
  for r in $(seq "$rounds"); do
    tag=${round_tags[r - 1]}
    vectors=$cluster_input
    [ "$r" -gt 1 ] && vectors=$exp/embed/${round_tags[r - 2]}_$embed_tag/emb_$train_set
    if in_stages 6; then
      log "stage 6: $cluster_method clustering of $vectors into ${num_clusters_opt[1]:-its own number of}" \
        "clusters (round $r of $rounds) -> $exp/cluster/$tag"
      views_opt=()      # the augmented-audio i-vectors of stage 5 are views of the i-vectors only
      if [ "$cluster_views" = true ] && [ "$vectors" = "$exp/ivectors_$train_set" ] &&
         [ -f "$exp/ivectors_${train_set}_aug/ivector.scp" ]; then
        views_opt=(--views "$exp/ivectors_${train_set}_aug" --utt2uniq "$data/${train_set}_aug/utt2uniq")
      fi
      steps/cluster.sh --cmd "$train_cmd" --method "$cluster_method" ${cluster_config:+--config "$cluster_config"} \
        "${num_clusters_opt[@]}" --set-opts "$cluster_opts" --device "$device" --seed "$seed" "${views_opt[@]}" \
        --utt2spk "$data/$train_set/utt2spk" "$vectors" "$exp/cluster/$tag"
    fi
    if in_stages 7; then
      log "stage 7: pseudo-label data dir $data/${train_set}_pl_$tag"
      steps/make_pseudo_label_dir.sh --min-cluster-size "$min_cluster_size" \
        "$data/$train_set" "$exp/cluster/$tag" "$data/${train_set}_pl_$tag"
    fi
    train_system "$tag|$data/${train_set}_pl_$tag|$embed_config|$embed_set_opts"
  done
fi

# ---- stage 10: report ------------------------------------------------------------------------------
if in_stages 10; then
  log "stage 10: tables and figures of $exp -> ${report_dir:-$exp/report}"
  steps/make_report.sh --corpus "$name" --data "$data" ${study:+--study "$study"} --command "$_run_command" \
    "$exp" "${report_dir:-$exp/report}"
fi

log "done (stages $stage..$stop_stage)"
