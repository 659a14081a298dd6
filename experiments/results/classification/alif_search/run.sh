F=/work/main/.venv/bin/fptt
C="--task mnist1d --validation-samples 500 --model alif --method bptt --epochs 10 --threads 1 --quiet --no-plots"
for v in "zero:--initial-state zero" "zero_linear:--initial-state zero --readout linear" "zero_liquid:--initial-state zero --readout liquid" "zero_uniform:--initial-state zero --weighting uniform" "zero_lr1e-2:--initial-state zero --lr 1e-2"; do
  n=${v%%:*}; f=${v#*:}
  $F train $C $f --run-dir /tmp/alif/$n > /dev/null 2>&1
  python3 -c "
import json; rows=[json.loads(l) for l in open('/tmp/alif/$n/metrics.jsonl')]
print('$n', [round(r['eval']['accuracy'],3) for r in rows][-3:], 'train', round(rows[-1]['train']['accuracy'],3), 'rate', round(rows[-1]['train']['firing_rate'],3))"
done
