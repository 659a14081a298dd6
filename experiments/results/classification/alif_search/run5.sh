F=/work/main/.venv/bin/fptt
C="--task mnist1d --validation-samples 500 --model alif --method bptt --epochs 10 --threads 1 --quiet --no-plots --initial-state zero --readout liquid --synapse-init torch_default"
for v in "tm1.5:--tau-membrane 1.5 0.2" "tm3_lr1e-2:--tau-membrane 3 1 --lr 1e-2" "tm3_2l:--tau-membrane 3 1 --hidden 128 128" ; do
  n=${v%%:*}; f=${v#*:}
  $F train $C $f --run-dir /tmp/alif/$n > /dev/null 2>&1
  python3 -c "
import json; rows=[json.loads(l) for l in open('/tmp/alif/$n/metrics.jsonl')]
print('$n', [round(r['eval']['accuracy'],3) for r in rows][-3:], 'train', round(rows[-1]['train']['accuracy'],3), 'rate', round(rows[-1]['train']['firing_rate'],3), flush=True)"
done
