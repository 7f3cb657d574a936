#!/usr/bin/env python3
"""Peer benchmark: confiance against pure-LDP (frequency oracles) and OpenDP (samplers).

Run through ./run.sh, which prepares the virtualenv and builds the Rust side.
Every configuration runs in its own process with a time limit; one that exceeds it is
reported as "not finished" (the issue's rule: 10 minutes at n = 10^6).
Data: Zipf(1.1) counts over d values, floor(n f_v), remainder to the first value —
the same counts in the Rust binary (src/main.rs). MSE = mean over the d categories of
(estimated frequency − true frequency)², one run per configuration.
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


def pure_ldp_run(proto, d, eps, n, k, out):
    warnings.filterwarnings("ignore")
    import random
    random.seed(1)
    np.random.seed(1)
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
    out.put({"impl": "pure-LDP", "mechanism": proto, "d": d, "eps": eps, "n": n, "mse": mse,
             "encode_s": encode, "decode_s": decode, "setup_s": setup})


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


def ours(mech, d, eps, n, timeout):
    try:
        r = subprocess.run([RUST, "freq", mech, str(d), str(eps), str(n), "1"], capture_output=True, text=True,
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


def fmt(x, unit=""):
    return "not finished" if x is None else (f"{x:.3g}{unit}")


PAIRS = [("GRR", "grr"), ("OUE", "oue"), ("OLH", "olh"), ("FastLH", "olh"), ("HR", "hadamard"),
         ("HR", "hadamard_blocks")]


def eps_str(eps):
    return str(int(eps)) if float(eps).is_integer() else str(eps)


def run_configs(args, log):
    """Run every selected configuration, appending one JSON line per finished run and one
    {"not_finished": ...} line per run that exceeded the time limit."""
    for d in args.d:
        for eps in args.eps:
            e = eps_str(eps)
            if args.side in ("both", "ours"):
                for m in args.mechanisms:
                    r = ours(m, d, e, args.n, args.timeout)
                    log.write(json.dumps(r or {"impl": "confiance", "mechanism": m, "d": d, "eps": e, "n": args.n,
                                               "not_finished": args.timeout}) + "\n")
                    log.flush()
                    print(d, e, "ours", m, "done" if r else "not finished", flush=True)
            if args.side in ("both", "theirs"):
                for proto in args.protocols:
                    r = with_timeout(pure_ldp_run, (proto, d, float(eps), args.n, args.k), args.timeout)
                    log.write(json.dumps(r or {"impl": "pure-LDP", "mechanism": proto, "d": d, "eps": e, "n": args.n,
                                               "not_finished": args.timeout}) + "\n")
                    log.flush()
                    print(d, e, "pure-LDP", proto, "done" if r else "not finished", flush=True)


def load(paths):
    """Records keyed by (impl, requested mechanism, d, ε, n); later lines win."""
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
            recs[(r["impl"], mech, int(r["d"]), eps_str(float(r["eps"])), int(r["n"]))] = r
    return recs


def table(recs, n, d_list, eps_list, timeout):
    lines = [f"n = {n}, time limit {timeout:.0f} s per configuration, Zipf(1.1) data, one run each.", "",
             "| d | ε | protocol | MSE ours | MSE pure-LDP | MSE ratio (ours/theirs) | encode ours (s) | encode pure-LDP (s) "
             "| decode ours (s) | decode pure-LDP (s) | decode speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    def get(impl, mech, d, e):
        r = recs.get((impl, mech, d, e, n))
        return None if r is None or "not_finished" in r else r
    for d in d_list:
        for eps in eps_list:
            e = eps_str(eps)
            best = None
            for proto, mine in PAIRS:
                o, theirs = get("confiance", mine, d, e), get("pure-LDP", proto, d, e)
                if recs.get(("pure-LDP", proto, d, e, n)) is None and recs.get(("confiance", mine, d, e, n)) is None:
                    continue
                if theirs:
                    best = theirs["mse"] if best is None else min(best, theirs["mse"])
                ratio = None if not (o and theirs) else o["mse"] / theirs["mse"]
                speed = None if not (o and theirs) else theirs["decode_s"] / o["decode_s"]
                lines.append(f"| {d} | {e} | {proto} vs our {mine} | {fmt(o and o['mse'])} | {fmt(theirs and theirs['mse'])} "
                             f"| {fmt(ratio)} | {fmt(o and o['encode_s'])} | {fmt(theirs and theirs['encode_s'])} "
                             f"| {fmt(o and o['decode_s'])} | {fmt(theirs and theirs['decode_s'])} | {fmt(speed, '×')} |")
            a = get("confiance", "auto", d, e)
            if recs.get(("confiance", "auto", d, e, n)) is not None:
                lines.append(f"| {d} | {e} | **auto** ({a['mechanism'] if a else '?'}) vs best pure-LDP | {fmt(a and a['mse'])} "
                             f"| {fmt(best)} | {fmt(None if not (a and best) else a['mse'] / best)} | | | | | |")
    rows = [r for k, r in recs.items() if k[1] == "samplers"]
    if rows:
        lines += ["", "Samplers (ns per sample; OpenDP Rust crate called directly, OpenDP Python through its binding):", "",
                  "| scale | ours Laplace | OpenDP Rust Laplace | OpenDP Python Laplace | ours Gaussian | OpenDP Rust Gaussian | OpenDP Python Gaussian |",
                  "|---|---|---|---|---|---|---|"]
        for scale in [1, 10, 1000]:
            g = lambda impl, key: next((x[key] for x in rows if x["impl"] == impl and x["scale"] == scale), None)
            lines.append(f"| {scale} | {fmt(g('confiance', 'laplace_ns'))} | {fmt(g('opendp-rust', 'laplace_ns'))} "
                         f"| {fmt(g('opendp-python', 'laplace_ns'))} | {fmt(g('confiance', 'gaussian_ns'))} "
                         f"| {fmt(g('opendp-rust', 'gaussian_ns'))} | {fmt(g('opendp-python', 'gaussian_ns'))} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description="Without arguments: the issue's full configuration, both sides, samplers, "
                                             "table in results/peers.md.")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, nargs="+", default=[16, 1024, 65536])
    ap.add_argument("--eps", type=float, nargs="+", default=[1, 4])
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--k", type=int, default=1024, help="pure-LDP FastLH hash functions")
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--side", choices=["both", "ours", "theirs"], default="both",
                    help="run only our side or only pure-LDP's (to split a long run; see --table)")
    ap.add_argument("--protocols", nargs="+", default=list(dict.fromkeys(p for p, _ in PAIRS)),
                    help="pure-LDP protocols to run")
    ap.add_argument("--mechanisms", nargs="+", default=["grr", "oue", "olh", "hadamard", "hadamard_blocks", "auto"],
                    help="our mechanisms to run")
    ap.add_argument("--no-samplers", action="store_true")
    ap.add_argument("--log", default=os.path.join(HERE, "results", "peers.jsonl"),
                    help="JSON lines, appended to (records of earlier runs are kept)")
    ap.add_argument("--table", nargs="*", metavar="JSONL",
                    help="only build results/peers.md from these logs (default: --log); later records win")
    args = ap.parse_args()
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
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
