F=/work/main/.venv/bin/fptt
C="--task mnist1d --validation-samples 500 --model alif --method bptt --epochs 10 --threads 1 --quiet --no-plots --initial-state zero --tau-membrane 3 1"
for v in "u:--weighting uniform" "s005:--surrogate-sigma 0.05" "u_s005:--weighting uniform --surrogate-sigma 0.05" "liquid:--readout liquid" "membrane:--readout-from membrane" "u_s005_ta20:--weighting uniform --surrogate-sigma 0.05 --tau-adaptation 20 5"; do
  n=${v%%:*}; f=${v#*:}
  $F train $C $f --run-dir /tmp/alif/$n > /dev/null 2>&1
  python3 -c "
import json; rows=[json.loads(l) for l in open('/tmp/alif/$n/metrics.jsonl')]
print('$n', [round(r['eval']['accuracy'],3) for r in rows][-3:], 'train', round(rows[-1]['train']['accuracy'],3), 'rate', round(rows[-1]['train']['firing_rate'],3), flush=True)"
done
