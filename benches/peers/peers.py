#!/usr/bin/env python3
"""Peer benchmark: confiance against pure-LDP (frequency oracles) and OpenDP (samplers).

Run through ./run.sh, which prepares the virtualenv and builds the Rust side.
Every configuration runs in its own process with a time limit; one that exceeds it is
reported as "not finished" (the issue's rule: 10 minutes at n = 10^6).
Data: Zipf(1.1) counts over d values, floor(n f_v), remainder to the first value —
the same counts in the Rust binary (src/main.rs). MSE = mean over the d categories of
(estimated frequency − true frequency)².

With --reps R every configuration runs R times, repetition r with seed r on both sides
(pure-LDP: random.seed(r) and np.random.seed(r); ours: ChaCha20 seed r and, for OLH,
pool_key r), on the same data. Each repetition is its own process under the time limit
and its own line in the log. The table then gives the mean MSE ± its standard error over
the repetitions, the ratio of the two means with a 95% interval (delta method on the
log of the ratio of two independent means), and median encode and decode times.
"""
import argparse
import json
import math
import multiprocessing as mp
import os
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RUST = os.path.join(HERE, "target", "release", "confiance-peers")


def zipf_counts(d, n):
    w = [(i ** -1.1) for i in range(1, d + 1)]
    total = sum(w)
    c = [math.floor(x / total * n) for x in w]
    c[0] += n - sum(c)
    return c


def pure_ldp_run(proto, d, eps, n, k, seed, out):
    warnings.filterwarnings("ignore")
    import random
    random.seed(seed)
    np.random.seed(seed)
    from pure_ldp.frequency_oracles import (DEClient, DEServer, UEClient, UEServer, LHClient, LHServer,
                                            FastLHClient, FastLHServer, HadamardResponseClient,
                                            HadamardResponseServer)
    counts = zipf_counts(d, n)
    data = np.repeat(np.arange(1, d + 1), counts)  # pure-LDP items are 1..d
    t0 = time.perf_counter()
    if proto == "GRR":
        client, server = DEClient(eps, d), DEServer(eps, d)
    elif proto == "OUE":
        client, server = UEClient(eps, d, use_oue=True), UEServer(eps, d, use_oue=True)
    elif proto == "OLH":
        client, server = LHClient(eps, d, use_olh=True), LHServer(eps, d, use_olh=True)
    elif proto == "FastLH":
        server = FastLHServer(eps, d, k, use_olh=True)
        client = FastLHClient(eps, d, k, use_olh=True)
    elif proto == "HR":
        server = HadamardResponseServer(eps, d)
        client = HadamardResponseClient(eps, d, server.get_hash_funcs())
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    reports = [client.privatise(int(x)) for x in data]
    encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    for r in reports:
        server.aggregate(r)
    est = np.asarray(server.estimate_all(range(1, d + 1), suppress_warnings=True), dtype=float)
    decode = time.perf_counter() - t0
    truth = np.asarray(counts, dtype=float) / n
    mse = float(np.mean((est / n - truth) ** 2))
    out.put({"impl": "pure-LDP", "mechanism": proto, "d": d, "eps": eps, "n": n, "seed": seed, "mse": mse,
             "encode_s": encode, "decode_s": decode, "setup_s": setup})


ENCODE_PAIRS = [("GRR", "grr"), ("OUE", "oue"), ("SUE", "sue"), ("OLH", "olh"), ("FastLH", "olh"),
                ("HR", "hadamard"), ("HR", "hadamard_blocks")]


def pure_ldp_client(proto, d, eps, k):
    """A pure-LDP client (set up outside the timed loop)."""
    from pure_ldp.frequency_oracles import (DEClient, UEClient, LHClient, FastLHClient, HadamardResponseClient,
                                            HadamardResponseServer)
    if proto == "GRR":
        return DEClient(eps, d)
    if proto in ("OUE", "SUE"):
        return UEClient(eps, d, use_oue=proto == "OUE")
    if proto == "OLH":
        return LHClient(eps, d, use_olh=True)
    if proto == "FastLH":
        return FastLHClient(eps, d, k, use_olh=True)
    if proto == "HR":
        return HadamardResponseClient(eps, d, HadamardResponseServer(eps, d).get_hash_funcs())
    raise ValueError(proto)


def pure_ldp_encode(client, d, seconds):
    """ns per report, values 1 + (i·7919 mod d), at least `seconds` and 50 reports."""
    count, i = 0, 0
    t0 = time.perf_counter()
    while True:
        for _ in range(50):
            client.privatise(1 + (i * 7919) % d)
            i += 1
        count += 50
        if time.perf_counter() - t0 >= seconds:
            break
    return (time.perf_counter() - t0) * 1e9 / count, count


def run_encode(args, log):
    """Encode time per report on both sides, every cell of (d, ε, protocol), repetitions
    outermost (so a change of load spreads over all cells), our side and pure-LDP's
    back to back in each cell. One JSON line per measurement."""
    import random
    warnings.filterwarnings("ignore")
    clients = {}
    for seed in range(args.first_seed, args.first_seed + args.reps):
        random.seed(seed)
        np.random.seed(seed)
        for d in args.d:
            for eps in args.eps:
                e = eps_str(eps)
                done = set()
                for proto, mine in ENCODE_PAIRS:
                    if mine not in done:
                        done.add(mine)
                        r = subprocess.run([RUST, "encode", mine, str(d), e, str(args.seconds), str(seed)],
                                           capture_output=True, text=True, check=True)
                        log.write(r.stdout.strip() + "\n")
                    key = (proto, d, e)
                    if key not in clients:
                        clients[key] = pure_ldp_client(proto, d, float(eps), args.k)
                    ns, count = pure_ldp_encode(clients[key], d, args.seconds)
                    log.write(json.dumps({"impl": "pure-LDP", "mode": "encode", "mechanism": proto, "d": d, "eps": e,
                                          "seed": seed, "count": count, "ns": ns}) + "\n")
                    log.flush()
                print("encode", d, e, "seed", seed, flush=True)


def encode_table(paths, d_list, eps_list):
    """Median ns per report over the repetitions, ours against pure-LDP's, and the ratio
    of the medians (with the range of per-repetition ratios)."""
    rows = {}
    for path in paths:
        for line in open(path):
            r = json.loads(line) if line.strip() else {}
            if r.get("mode") != "encode":
                continue
            rows.setdefault((r["impl"], r["mechanism"], int(r["d"]), eps_str(float(r["eps"]))), {})[r["seed"]] = r["ns"]
    lines = ["| d | ε | ours | pure-LDP | ours µs | pure-LDP µs | ratio (median) | ratio range over reps |",
             "|---|---|---|---|---:|---:|---:|---|"]
    for d in d_list:
        for eps in eps_list:
            e = eps_str(eps)
            for proto, mine in ENCODE_PAIRS:
                o, t = rows.get(("confiance", mine, d, e), {}), rows.get(("pure-LDP", proto, d, e), {})
                if not (o and t):
                    continue
                mo, mt = float(np.median(list(o.values()))), float(np.median(list(t.values())))
                per = [o[s] / t[s] for s in o if s in t]
                lines.append(f"| {d} | {e} | {mine} | {proto} | {mo / 1e3:.3g} | {mt / 1e3:.3g} | {mo / mt:.3g} "
                             f"| {min(per):.3g}–{max(per):.3g} ({len(per)}) |")
    return "\n".join(lines)


def with_timeout(target, args, timeout):
    q = mp.Queue()
    p = mp.Process(target=target, args=args + (q,))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.terminate()
        p.join()
        return None
    return q.get() if not q.empty() else None


def ours(mech, d, eps, n, seed, timeout):
    try:
        r = subprocess.run([RUST, "freq", mech, str(d), str(eps), str(n), str(seed)], capture_output=True, text=True,
                           timeout=timeout, check=True)
        rec = json.loads(r.stdout)
        rec["requested"] = mech
        return rec
    except subprocess.TimeoutExpired:
        return None


def opendp_python(count):
    import opendp.prelude as dp
    dp.enable_features("contrib")
    rows = []
    for scale in [1, 10, 1000]:
        lap = dp.m.make_laplace(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale=float(scale))
        gau = dp.m.make_gaussian(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale=float(scale))
        t = time.perf_counter()
        for _ in range(count):
            lap(0)
        lap_ns = (time.perf_counter() - t) * 1e9 / count
        t = time.perf_counter()
        for _ in range(count):
            gau(0)
        gau_ns = (time.perf_counter() - t) * 1e9 / count
        rows.append({"impl": "opendp-python", "scale": scale, "laplace_ns": lap_ns, "gaussian_ns": gau_ns})
    return rows


def fmt(x, unit="", missing="not finished"):
    return missing if x is None else (f"{x:.3g}{unit}")


PAIRS = [("GRR", "grr"), ("OUE", "oue"), ("OLH", "olh"), ("FastLH", "olh"), ("HR", "hadamard"),
         ("HR", "hadamard_blocks")]


def eps_str(eps):
    return str(int(eps)) if float(eps).is_integer() else str(eps)


def run_configs(args, log):
    """Run every selected configuration R times (repetitions outermost, so that a change of
    load spreads over all configurations), appending one JSON line per finished run and one
    {"not_finished": ...} line per run that exceeded the time limit."""
    for seed in range(args.first_seed, args.first_seed + args.reps):
        for d in args.d:
            for eps in args.eps:
                e = eps_str(eps)
                if args.side in ("both", "ours"):
                    for m in args.mechanisms:
                        r = ours(m, d, e, args.n, seed, args.timeout)
                        log.write(json.dumps(r or {"impl": "confiance", "mechanism": m, "d": d, "eps": e, "n": args.n,
                                                   "seed": seed, "not_finished": args.timeout}) + "\n")
                        log.flush()
                        print(d, e, "seed", seed, "ours", m, "done" if r else "not finished", flush=True)
                if args.side in ("both", "theirs"):
                    for proto in args.protocols:
                        r = with_timeout(pure_ldp_run, (proto, d, float(eps), args.n, args.k, seed), args.timeout)
                        log.write(json.dumps(r or {"impl": "pure-LDP", "mechanism": proto, "d": d, "eps": e,
                                                   "n": args.n, "seed": seed, "not_finished": args.timeout}) + "\n")
                        log.flush()
                        print(d, e, "seed", seed, "pure-LDP", proto, "done" if r else "not finished", flush=True)


def load(paths):
    """Records keyed by (impl, requested mechanism, d, ε, n, seed); later lines win.
    Logs written before --reps existed have no seed: they were run with seed 1."""
    recs = {}
    for path in paths:
        for line in open(path):
            if not line.strip():
                continue
            r = json.loads(line)
            if "scale" in r:
                recs[(r["impl"], "samplers", r["scale"])] = r
                continue
            mech = r.get("requested", r["mechanism"])
            recs[(r["impl"], mech, int(r["d"]), eps_str(float(r["eps"])), int(r["n"]), int(r.get("seed", 1)))] = r
    return recs


class Runs:
    """The repetitions of one side of one configuration: `runs` finished, `tried` in all."""

    def __init__(self, recs):
        self.tried = len(recs)
        self.runs = [r for r in recs if "not_finished" not in r]

    def __bool__(self):
        return bool(self.runs)

    def mean_se(self, key="mse"):
        x = np.array([r[key] for r in self.runs])
        se = float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else None
        return float(np.mean(x)), se

    def median(self, key):
        return float(np.median([r[key] for r in self.runs]))

    def missing(self):
        return "not run" if self.tried == 0 else "not finished"

    def mse_cell(self):
        if not self:
            return self.missing()
        m, se = self.mean_se()
        return f"{m:.3g}" if se is None else f"{m:.3g} ± {se:.2g}"

    def count_cell(self):
        if self.tried == 0:
            return "—"
        return f"{len(self.runs)}" if len(self.runs) == self.tried else f"{len(self.runs)} of {self.tried}"


def ratio_cell(a, b):
    """Ratio of the mean MSEs a/b; with repetitions on both sides, a 95% interval by the
    delta method on log(mean_a / mean_b): se² = (se_a/mean_a)² + (se_b/mean_b)²
    (independent sides, normal approximation)."""
    if not (a and b):
        return "not run" if not (a.tried and b.tried) else "not finished"
    (ma, sa), (mb, sb) = a.mean_se(), b.mean_se()
    r = ma / mb
    if sa is None or sb is None:
        return f"{r:.3g}"
    half = 1.96 * math.sqrt((sa / ma) ** 2 + (sb / mb) ** 2)
    return f"{r:.3g} [{r * math.exp(-half):.3g}, {r * math.exp(half):.3g}]"


def table(recs, n, d_list, eps_list, timeout):
    lines = [f"n = {n}, time limit {timeout:.0f} s per run, Zipf(1.1) data. MSE: mean ± standard error over the "
             "runs (reps = finished runs ours / pure-LDP); ratio of the mean MSEs with a 95% interval (delta "
             "method on the log of the ratio); theory: our protocol's expected MSE on these counts (Wang et al. "
             "2017 with the n_v term; for OLH + the collision-correction term where the aggregator corrects, "
             "else + the seed-pool term; block formula for HR with blocks; — where the run did not log it); times: "
             "medians over the runs; decode speed-up: ratio of the medians.", "",
             "| d | ε | protocol | reps | MSE ours | MSE theory (ours) | MSE pure-LDP | MSE ratio (ours/theirs) "
             "| encode ours (s) | encode pure-LDP (s) | decode ours (s) | decode pure-LDP (s) | decode speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def runs(impl, mech, d, e):
        return Runs([r for k, r in recs.items() if k[:5] == (impl, mech, d, e, n)])

    def med(side, key):
        return fmt(side.median(key)) if side else side.missing()

    def theory(side):
        return fmt(side.mean_se("theory_mse")[0]) if side and "theory_mse" in side.runs[0] else "—"

    for d in d_list:
        for eps in eps_list:
            e = eps_str(eps)
            best = None
            for proto, mine in PAIRS:
                o, theirs = runs("confiance", mine, d, e), runs("pure-LDP", proto, d, e)
                if not (o.tried or theirs.tried):
                    continue
                if theirs and (best is None or theirs.mean_se()[0] < best[1].mean_se()[0]):
                    best = (proto, theirs)
                speed = ratio_cell(o, theirs) if not (o and theirs) else \
                    fmt(theirs.median("decode_s") / o.median("decode_s"), "×")
                lines.append(f"| {d} | {e} | {proto} vs our {mine} | {o.count_cell()} / {theirs.count_cell()} "
                             f"| {o.mse_cell()} | {theory(o)} | {theirs.mse_cell()} | {ratio_cell(o, theirs)} "
                             f"| {med(o, 'encode_s')} | {med(theirs, 'encode_s')} | {med(o, 'decode_s')} "
                             f"| {med(theirs, 'decode_s')} | {speed} |")
            a = runs("confiance", "auto", d, e)
            if a.tried:
                name = a.runs[0]["mechanism"] if a else "?"
                lines.append(f"| {d} | {e} | **auto** ({name}) vs best pure-LDP ({best[0] if best else '—'}) "
                             f"| {a.count_cell()} / {best[1].count_cell() if best else 0} | {a.mse_cell()} | {theory(a)} "
                             f"| {best[1].mse_cell() if best else 'not finished'} "
                             f"| {ratio_cell(a, best[1]) if best else 'not finished'} | | | | | |")
    rows = [r for k, r in recs.items() if k[1] == "samplers"]
    if rows:
        lines += ["", "Samplers (ns per sample; OpenDP Rust crate called directly, OpenDP Python through its binding):", "",
                  "| scale | ours Laplace | OpenDP Rust Laplace | OpenDP Python Laplace | ours Gaussian | OpenDP Rust Gaussian | OpenDP Python Gaussian |",
                  "|---|---|---|---|---|---|---|"]
        for scale in [1, 10, 1000]:
            def g(impl, key):
                return fmt(next((x[key] for x in rows if x["impl"] == impl and x["scale"] == scale), None),
                           missing="not run")
            lines.append(f"| {scale} | {g('confiance', 'laplace_ns')} | {g('opendp-rust', 'laplace_ns')} "
                         f"| {g('opendp-python', 'laplace_ns')} | {g('confiance', 'gaussian_ns')} "
                         f"| {g('opendp-rust', 'gaussian_ns')} | {g('opendp-python', 'gaussian_ns')} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description="Without arguments: the issue's full configuration, both sides, samplers, "
                                             "table in results/peers.md.")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, nargs="+", default=[16, 1024, 65536])
    ap.add_argument("--eps", type=float, nargs="+", default=[1, 4])
    ap.add_argument("--timeout", type=float, default=600, help="seconds per run (each repetition)")
    ap.add_argument("--reps", type=int, default=1, help="repetitions per configuration, seeds first-seed.. on both sides")
    ap.add_argument("--first-seed", type=int, default=1, help="seed of the first repetition (to extend a run)")
    ap.add_argument("--k", type=int, default=1024, help="pure-LDP FastLH hash functions")
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--side", choices=["both", "ours", "theirs"], default="both",
                    help="run only our side or only pure-LDP's (to split a long run; see --table)")
    ap.add_argument("--protocols", nargs="+", default=list(dict.fromkeys(p for p, _ in PAIRS)),
                    help="pure-LDP protocols to run")
    ap.add_argument("--mechanisms", nargs="+", default=["grr", "oue", "olh", "hadamard", "hadamard_blocks", "auto"],
                    help="our mechanisms to run")
    ap.add_argument("--no-samplers", action="store_true")
    ap.add_argument("--encode", action="store_true",
                    help="only encode time per report, both sides, every cell of --d × --eps (ENCODE_PAIRS); "
                         "table in results/encode.md")
    ap.add_argument("--seconds", type=float, default=0.3, help="--encode: seconds per measurement")
    ap.add_argument("--log", default=os.path.join(HERE, "results", "peers.jsonl"),
                    help="JSON lines, appended to (records of earlier runs are kept)")
    ap.add_argument("--table", nargs="*", metavar="JSONL",
                    help="only build results/peers.md from these logs (default: --log); later records win")
    args = ap.parse_args()
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    if args.encode:
        if args.table is None:
            with open(args.log, "a") as log:
                run_encode(args, log)
        out = encode_table(args.table or [args.log], args.d, args.eps)
        open(os.path.join(HERE, "results", "encode.md"), "w").write(out + "\n")
        print(out)
        return
    if args.table is None:
        with open(args.log, "a") as log:
            run_configs(args, log)
            if not args.no_samplers:
                r = subprocess.run([RUST, "samplers", str(args.samples)], capture_output=True, text=True, check=True)
                rows = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
                rows += opendp_python(max(1000, args.samples // 20))
                for row in rows:
                    log.write(json.dumps(row) + "\n")
    out = table(load(args.table or [args.log]), args.n, args.d, args.eps, args.timeout)
    open(os.path.join(HERE, "results", "peers.md"), "w").write(out + "\n")
    print(out)


if __name__ == "__main__":
    main()
