"""numpy references for the tests: exact (float64) attention forward and backward, and a naive
implementation in the inputs' precision (float32 arithmetic, rounded to the dtype after each step, as a
framework would compute it), for FlashAttention's error rule:

    forward:  max |out - ref| <= 2 * max |naive - ref| + floor
    backward: max |dq - ref|  <= 3 * max |naive - ref| + floor

floor is twice the largest rounding noise of one stored value (flash_attn's (x + 0.3) - 0.3 drift, at least
half an ulp), as in the C conformance suite.
"""
import numpy as np

import flashport

# ---------------------------------------------------------------------------------------------- dtypes


def round_bf16(x):
    """Round to bfloat16 (nearest even), returned as float32."""
    x = np.asarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def rounder(dtype):
    """float -> nearest value of `dtype` ('float32' | 'float16' | 'bfloat16'), as float32."""
    if dtype == "float32":
        return lambda x: np.asarray(x, dtype=np.float32)
    if dtype == "float16":
        return lambda x: np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)
    if dtype == "bfloat16":
        return round_bf16
    raise ValueError(dtype)


def ulp(dtype, x):
    x = np.abs(np.asarray(x, dtype=np.float64))
    if dtype == "float32":
        return np.spacing(x.astype(np.float32)).astype(np.float64)
    if dtype == "float16":
        return np.spacing(np.minimum(x, 65504).astype(np.float16)).astype(np.float64)
    m, e = np.frexp(np.maximum(x, 1e-30))
    return np.ldexp(1.0, e - 8)


def rounding_noise(dtype, x):
    """flash_attn's fwd_atol term: how far (x + 0.3) - 0.3 drifts in the dtype, at least half an ulp."""
    r = rounder(dtype)
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    x = np.where(finite, x, 0.0)
    rx = r(x)
    up = r(rx + np.float32(0.3))
    down = r(up - np.float32(0.3))
    drift = np.abs(down.astype(np.float64) - rx.astype(np.float64))
    return np.where(finite, np.maximum(drift, 0.5 * ulp(dtype, x)), 0.0)


def floor_of(dtype, ref):
    ref = np.asarray(ref, dtype=np.float64)
    return 2.0 * float(rounding_noise(dtype, ref).max()) if ref.size else 0.0


def max_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError("shape %s != %s" % (a.shape, b.shape))
    same_inf = np.isinf(a) & np.isinf(b) & (np.sign(a) == np.sign(b))
    with np.errstate(invalid="ignore"):
        d = np.where(same_inf, 0.0, np.abs(a - b))
    if np.isnan(d).any():
        return float("inf")
    return float(d.max()) if d.size else 0.0


def assert_fa_rule(name, got, ref, naive, dtype, factor=2.0, extra_floor=0.0):
    err = max_err(got, ref)
    nerr = max_err(naive, ref)
    fl = floor_of(dtype, ref) + extra_floor
    allowed = factor * nerr + fl
    assert err <= allowed, "%s: error %.3g > %g x naive %.3g + floor %.3g" % (name, err, factor, nerr, fl)


# ---------------------------------------------------------------------------------------------- rotary


def rotate(x, cos, sin, positions, interleaved):
    """Rotary embedding of x (..., n, h, d) at positions (n,), over the first 2 * cos.shape[1] dims (float64)."""
    x = np.array(x, dtype=np.float64)
    half = cos.shape[1]
    c = np.asarray(cos, np.float64)[positions][:, None, :]  # (n, 1, half)
    s = np.asarray(sin, np.float64)[positions][:, None, :]
    if interleaved:
        x0, x1 = x[..., 0:2 * half:2].copy(), x[..., 1:2 * half:2].copy()
        x[..., 0:2 * half:2] = x0 * c - x1 * s
        x[..., 1:2 * half:2] = x0 * s + x1 * c
    else:
        x0, x1 = x[..., :half].copy(), x[..., half:2 * half].copy()
        x[..., :half] = x0 * c - x1 * s
        x[..., half:2 * half] = x0 * s + x1 * c
    return x


def rotate_naive(x, cos, sin, positions, interleaved, dtype):
    """Rotation in float32, rounded to the dtype (what a framework stores)."""
    x32 = np.asarray(x, np.float32)
    out = rotate(x32, np.asarray(cos, np.float32), np.asarray(sin, np.float32), positions, interleaved)
    return rounder(dtype)(out.astype(np.float32)).astype(np.float64)


# ---------------------------------------------------------------------------------------------- attention


class Params(object):
    def __init__(self, scale=None, causal=False, window=(-1, -1), softcap=0.0, dropout_p=0.0, rng_state=None):
        self.scale = scale
        self.causal = causal
        self.window = window
        self.softcap = softcap
        self.dropout_p = dropout_p
        self.rng_state = rng_state


def visible(sq, sk, p):
    """(sq, sk) bool: key j visible to query i (bottom-right aligned causal / window)."""
    i = np.arange(sq)[:, None]
    j = np.arange(sk)[None, :]
    diag = i + sk - sq
    wl, wr = p.window
    if p.causal:
        wr = 0
    m = np.ones((sq, sk), dtype=bool)
    if wl >= 0:
        m &= j >= diag - wl
    if wr >= 0:
        m &= j <= diag + wr
    return m


def _seq_matmul(a, b):
    """a @ b in float32 with a plain sequential sum (acc += x * y), the naive loop of the C conformance suite
    (BLAS's blocked float32 sums are more accurate than a framework's naive kernel)."""
    prod = a[:, :, None].astype(np.float32) * b[None, :, :].astype(np.float32)
    return np.cumsum(prod, axis=1, dtype=np.float32)[:, -1, :] if a.shape[1] else np.zeros((a.shape[0], b.shape[1]),
                                                                                         np.float32)


def attention_seq(q, k, v, p, b, slopes=None, dout=None, dtype=None, terms=None):
    """One sequence. q (sq, hq, d), k (sk, hkv, d), v (sk, hkv, dv), float64 values. b: its batch index (dropout).
    slopes: (hq,) ALiBi slopes or None. dtype None: exact float64; else naive in that precision.
    Returns out (sq, hq, dv), lse (hq, sq) and, with dout (sq, hq, dv), (dq, dk, dv).
    terms (exact backward only): a dict that receives the size of the terms each gradient sums (see
    grad_floors)."""
    exact = dtype is None
    ft = np.float64 if exact else np.float32
    mm = (lambda a, b: a @ b) if exact else _seq_matmul
    rnd = (lambda x: x) if exact else rounder(dtype)
    sq, hq, d = q.shape
    sk, hkv, dv = v.shape
    group = hq // hkv
    scale = p.scale if p.scale is not None else 1.0 / np.sqrt(d)
    vis = visible(sq, sk, p)
    out = np.zeros((sq, hq, dv))
    lse = np.full((hq, sq), -np.inf)
    grads = None
    if dout is not None:
        grads = [np.zeros(q.shape), np.zeros(k.shape), np.zeros(v.shape)]
    i = np.arange(sq)[:, None]
    j = np.arange(sk)[None, :]
    dist = np.abs(i + sk - sq - j).astype(ft)
    for h in range(hq):
        hk = h // group
        Q, K, V = q[:, h].astype(ft), k[:, hk].astype(ft), v[:, hk].astype(ft)
        s = rnd(mm(Q, K.T)).astype(ft) * ft(scale)
        if p.softcap > 0:
            t = np.tanh(s / ft(p.softcap))
            s = ft(p.softcap) * t
        if slopes is not None:
            s = s - ft(slopes[h]) * dist
        s = np.where(vis, s, -np.inf)
        m = s.max(axis=1, keepdims=True)
        any_vis = vis.any(axis=1)
        m_safe = np.where(np.isfinite(m), m, 0.0).astype(ft)
        e = np.exp(s - m_safe)
        l = e.sum(axis=1, keepdims=True) if exact else np.cumsum(e, axis=1, dtype=ft)[:, -1:]
        P = np.where(any_vis[:, None], e / np.where(l > 0, l, 1), 0).astype(ft)
        keep = np.ones((sq, sk), dtype=ft)
        if p.dropout_p > 0:
            seed, off = p.rng_state
            keep = flashport.dropout_mask(seed, off, b, h, sq, sk, p.dropout_p).astype(ft) / ft(1 - p.dropout_p)
        Pd = rnd(P * keep).astype(ft)
        O = rnd(mm(Pd, V))
        out[:, h] = O
        lse[h] = np.where(any_vis, (m_safe + np.log(np.where(l > 0, l, 1)))[:, 0], -np.inf)
        if dout is not None:
            dO = dout[:, h].astype(ft)
            grads[2][:, hk] += rnd(mm(Pd.T, dO))
            dPd = rnd(mm(dO, V.T)).astype(ft)
            dP = dPd * keep
            D = (dP * P).sum(axis=1, keepdims=True)
            dS = P * (dP - D)
            cf = (1 - t * t) if p.softcap > 0 else 1.0
            if p.softcap > 0:
                dS = dS * cf
            if terms is not None:
                # |terms| of dS: P (|dO||V|^T keep + |dO . O|) cf; dq sums them against k, dk against q.
                A = P * (np.abs(dO) @ np.abs(V).T * keep + (np.abs(dO) * np.abs(O)).sum(1, keepdims=True)) * cf
                terms["row"] = max(terms.get("row", 0.0), float(A.sum(1).max()) * scale if sq and sk else 0.0)
                terms.setdefault("col", {}).setdefault((b, hk), np.zeros(sk))
                terms["col"][(b, hk)] += A.sum(0) * scale
                terms.setdefault("colpd", {}).setdefault((b, hk), np.zeros(sk))
                terms["colpd"][(b, hk)] += np.abs(Pd).sum(0)
            dS = rnd(dS).astype(ft)
            grads[0][:, h] = rnd(mm(dS, K)) * scale
            grads[1][:, hk] += rnd(mm(dS.T, Q)) * scale
    if dout is not None:
        return out, lse, tuple(rnd(g) for g in grads)
    return out, lse


def attention(q, k, v, p, alibi=None, cu_q=None, cu_k=None, seqlens_k=None, dout=None, dtype=None, terms=None):
    """Batched reference. Dense: q (b, sq, hq, d), k/v (b, sk, hkv, d). Varlen (cu_q given): q (total_q, hq, d),
    k/v (total_k, hkv, d) with cu_q/cu_k prefix sums. seqlens_k: dense keys used per sequence (kv cache).
    alibi: (hq,) or (b, hq). Returns out, lse ((b, hq, sq) or (hq, total_q)) and grads with dout."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    if dout is not None:
        dout = np.asarray(dout, np.float64)
    varlen = cu_q is not None
    nb = len(cu_q) - 1 if varlen else q.shape[0]
    out = np.zeros(q.shape[:-1] + (v.shape[-1],))
    lse = np.zeros((q.shape[1], q.shape[0]) if varlen else (q.shape[0], q.shape[2], q.shape[1]))
    grads = [np.zeros(q.shape), np.zeros(k.shape), np.zeros(v.shape)] if dout is not None else None
    for b in range(nb):
        if varlen:
            qs = slice(cu_q[b], cu_q[b + 1])
            ks = slice(cu_k[b], cu_k[b + 1])
            qb, kb, vb = q[qs], k[ks], v[ks]
            db = dout[qs] if dout is not None else None
        else:
            n = seqlens_k[b] if seqlens_k is not None else k.shape[1]
            qb, kb, vb = q[b], k[b, :n], v[b, :n]
            db = dout[b] if dout is not None else None
        slopes = None
        if alibi is not None:
            alibi = np.asarray(alibi, np.float64)
            slopes = alibi if alibi.ndim == 1 else alibi[b]
        r = attention_seq(qb, kb, vb, p, b, slopes, db, dtype, terms)
        if varlen:
            out[qs] = r[0]
            lse[:, qs] = r[1]
            if grads is not None:
                grads[0][qs] = r[2][0]
                grads[1][ks] = r[2][1]
                grads[2][ks] = r[2][2]
        else:
            out[b] = r[0]
            lse[b] = r[1]
            if grads is not None:
                grads[0][b] = r[2][0]
                grads[1][b, :kb.shape[0]] = r[2][1]
                grads[2][b, :kb.shape[0]] = r[2][2]
    if grads is not None:
        return out, lse, tuple(grads)
    return out, lse


def grad_floors(dtype, grads_ref, lse_ref, q, k, dout, terms):
    """Per gradient (dq, dk, dv): the rounding floor plus the noise of recomputing P from the fp32 LSE
    (FlashAttention's backward does): P's relative error is about half an fp32 ulp of |LSE|, so the term is
    2 fp32 ulps of max |LSE| (4x that) times the size of the terms each gradient is a sum of. (The C
    conformance suite allows 8 ulps; the bindings are held to a tighter bound.)"""
    lse = np.asarray(lse_ref, np.float64)
    max_lse = max(1.0, float(np.abs(lse[np.isfinite(lse)]).max()) if np.isfinite(lse).any() else 1.0)
    mq, mk, mdo = (float(np.abs(np.asarray(x, np.float64)).max()) if np.size(x) else 0.0 for x in (q, k, dout))
    mag = [terms.get("row", 0.0) * mk,
           max([float(c.max()) for c in terms.get("col", {}).values() if c.size] or [0.0]) * mq,
           max([float(c.max()) for c in terms.get("colpd", {}).values() if c.size] or [0.0]) * mdo]
    eps = 2.0 ** -23
    return [floor_of(dtype, g) + 2.0 * eps * max_lse * m for g, m in zip(grads_ref, mag)]
