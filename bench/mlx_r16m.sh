#!/usr/bin/env bash
# bench/mlx_r16m.sh OUT.jsonl [REPS] [SHAPES] [ISAS]: issue 18 item 1 (MLX 4-bit repacked to R16M). Alternates, one
# process per run: this build and a main build (OLD=path) on the MLX 4-bit folder and the Q4_0 file of the
# same shape (bench/mlx.sh makes both), with all kernels and with LOCALLM_CPU=avx2 (this build only:
# main has no LOCALLM_CPU). First line: bench/membw.c read bandwidth (2 threads).
# alternating runs, one process each: new/old binary x (MLX 4-bit folder, Q4_0 GGUF) x (avx512, forced avx2)
set -u
D=${LOCALLM_BENCH_DIR:-/tmp/locallm-bench}; NEW=${NEW:-$(dirname "$0")/../build/locallm}; OLD=${OLD:?OLD=path of a main build}
out=$1; reps=${2:-3}; shapes=${3:-"qwen2.5-0.5b llama-3.2-1b"}; isas=${4:-"avx512 avx2"}
bw=$($D/membw 2 512 9 2>/dev/null); echo "{\"membw_gbs\": $bw}" >> $out
for r in $(seq 1 $reps); do
 for p in $shapes; do
  for isa in $isas; do
   for b in new old; do
    B=$NEW; [ $b = old ] && B=$OLD
    [ $b = old ] && [ $isa = avx2 ] && continue  # main has no LOCALLM_CPU
    for f in $D/$p-mlx4 $D/$p-Q4_0.gguf; do
     e=""; [ $isa = avx2 ] && e=avx2
     j=$(LOCALLM_CPU=$e $B bench $f -p 128 -n 32 -t 2 -r 1 --json 2>/dev/null | tail -1)
     echo "{\"bin\":\"$b\",\"isa\":\"$isa\",\"model\":\"$(basename $f)\",\"round\":$r,\"res\":$j}" >> $out
    done
   done
  done
 done
done
