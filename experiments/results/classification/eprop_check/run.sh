F=/work/main/.venv/bin/fptt
C="--task mnist1d --validation-samples 500 --model alif --readout fixed --method eprop --lr 3e-3 --epochs 2 --threads 1 --quiet --no-plots"
for v in "tm20:--tau-membrane 20 5" "th0.1:--threshold 0.1" "xavier_random:--synapse-init xavier --initial-state random"; do
  n=${v%%:*}; f=${v#*:}
  $F train $C $f --run-dir /tmp/ep/$n > /dev/null 2>&1
  python3 -c "
import json; rows=[json.loads(l) for l in open('/tmp/ep/$n/metrics.jsonl')]
print('$n', [round(r['eval']['accuracy'],3) for r in rows], 'train', round(rows[-1]['train']['accuracy'],3), 'rate', round(rows[-1]['train']['firing_rate'],3), flush=True)"
done
