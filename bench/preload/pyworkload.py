"""CPython workload for the allocator benchmarks (run with PYTHONMALLOC=malloc so every object
goes through malloc): dicts of strings, lists of tuples, JSON round trips, sorting, and
deleting it all, a few times over."""
import json
import time

t0 = time.perf_counter()
for _round in range(3):
    d = {f"key-{i}": [i, str(i) * (i % 5), (i, i * 2.5)] for i in range(150000)}
    s = json.dumps({k: v[:2] for k, v in list(d.items())[:40000]})
    back = json.loads(s)
    items = sorted(d.items(), key=lambda kv: (len(kv[1][1]), kv[0]))
    words = " ".join(k for k, _ in items[:50000]).split()
    counts = {}
    for w in words:
        counts[w[:6]] = counts.get(w[:6], 0) + 1
    del d, s, back, items, words, counts
print(f"pyworkload seconds={time.perf_counter() - t0:.4f}")
