F=/work/main/.venv/bin/fptt
C="--task mnist1d --validation-samples 500 --model alif --method bptt --epochs 10 --threads 1 --quiet --no-plots"
for v in "tm3_zero:--initial-state zero --tau-membrane 3 1" "tm5_zero:--initial-state zero --tau-membrane 5 1" "tm10_zero:--initial-state zero --tau-membrane 10 2" "tm5_random:--tau-membrane 5 1" "tm5_zero_ta40:--initial-state zero --tau-membrane 5 1 --tau-adaptation 40 5"; do
  n=${v%%:*}; f=${v#*:}
  $F train $C $f --run-dir /tmp/alif/$n > /dev/null 2>&1
  python3 -c "
import json; rows=[json.loads(l) for l in open('/tmp/alif/$n/metrics.jsonl')]
print('$n', [round(r['eval']['accuracy'],3) for r in rows][-3:], 'train', round(rows[-1]['train']['accuracy'],3), 'rate', round(rows[-1]['train']['firing_rate'],3), flush=True)"
done
