"""The per-prompt graph walks of the chains and evidence jobs, compiled (numba).

``sample_chains``: every chain of one training sample (the chains job).
``context_evidence``: the evidence of one prompt: chains, their summary, and the score;
``batch_evidence`` runs it over an Arrow batch of prompts in one call.

One pass over the adjacency arrays per prompt, with no temporaries the size of what it
visits. The numpy version it replaced built every gathered edge list, mask and
(candidate x similar user) matrix as arrays: about 4 ms a prompt on the 1M synthetic
graph, 564 s of the evidence job at 1M, where this spends a fraction of that
(``bench/RESULTS.md``, "Evidence job compiled"). Definitions: docs/METHOD.md §8a and
``spark_jobs.evidence``; the plain-Python reference (``spark_jobs.reference``) is the
spec the tests hold it to.

Every array over users or items is a workspace the caller owns and reuses across
prompts (``Workspace``): the kernel marks what it touches and clears exactly that
before it returns, so a prompt costs what it visits, not the graph's size. One part is
kept from prompt to prompt: how many of u0's items each other user shares before the
cutoff (the audiences of u0's items, the kernel's largest gather). A user's next prompt
with a later cutoff adds only the audience edges between the two cutoffs, so the job
sorts each user's prompts by cutoff; any other order is still exact, only slower (the
counts are cleared and rebuilt when the user changes or the cutoff goes back).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit

IN_A = 1 << 30  # item mark: u0 chose it before the cutoff
LOW = IN_A - 1  # item mark: 1 + its (last) position in the history, if usable


@dataclass
class Workspace:
    item_mark: np.ndarray  # int64 per item, zero between prompts
    user_slot: np.ndarray  # int64 per user, -1 between prompts: the user's row in a table
    overlap: np.ndarray  # int64 per user: items shared with run[0] before run[1]
    a_len: np.ndarray  # per item of run[0] before run[1]: its audience counted so far
    run: np.ndarray  # (user, cutoff, items) of the counts in ``overlap``; user -1: none

    @classmethod
    def for_graph(cls, g) -> Workspace:
        """For a ``spark_jobs.chains.GraphIndex``."""
        n_users, n_items = len(g.users), len(g.items)
        max_degree = int(np.diff(g.seq_ptr).max(initial=0))
        return cls(
            np.zeros(n_items, dtype=np.int64),
            np.full(n_users, -1, dtype=np.int64),
            np.zeros(n_users, dtype=np.int64),
            np.zeros(max(max_degree, 1), dtype=np.int64),
            np.array([-1, 0, 0], dtype=np.int64),
        )


@lru_cache(maxsize=8)
def near_table(proximity: float, scale: float, longest: int) -> np.ndarray:
    """1 + proximity x exp((1 - g) / scale) for every gap g a user's sequence of at most
    ``longest`` edges can hold: one lookup per term in the kernel, not an exp."""
    table = 1.0 + proximity * np.exp((1.0 - np.arange(max(longest, 1))) / scale)
    table.flags.writeable = False  # shared by every caller of the cache
    return table


@njit(cache=True, nogil=True)
def _count_before(ts, lo, hi, cutoff):
    """How many of ts[lo:hi] (sorted) are before the cutoff: a binary search."""
    a, b = lo, hi
    while a < b:
        mid = (a + b) >> 1
        if ts[mid] < cutoff:
            a = mid + 1
        else:
            b = mid
    return a - lo


@njit(cache=True, nogil=True)
def context_evidence(
    seq_ptr, seq_item, seq_ts, out_ptr, out_item, out_ts, in_ptr, in_user, in_ts,
    aud_ptr, aud_user, aud_ts, aud_pos,
    u0, cutoff, hist, cands, min_overlap, via_keep, decay, near,
    item_mark, user_slot, overlap, a_len, run,
):  # fmt: skip
    """(users, paths, summed Jaccard, score, via, via_users) of each candidate of one
    prompt; a candidate with ``users == 0`` has no evidence. ``via[c]`` holds the history
    positions of the first ``via_keep`` history items its chains pass through, most users
    first, then the more recent (-1 pads), and ``via_users[c]`` their users.

    Chains (capped adjacency): u1 among c's capped users before the cutoff (not u0),
    u1's capped items before it, closure |A ∩ B| >= min_overlap, and a usable history
    item i0 != c among them. The score (every user, uncapped): over c's users before
    the cutoff that meet the closure and chose a usable history item other than c,
    Jaccard(A, B) x the sum over those items h of decay^(history items after h) /
    sqrt(|U_h|) x near[g], g how many places apart h and c are in that user's sequence
    (``aud_pos``; ``near_table``); divided by sqrt(|U_c \\ {u0}|).
    """
    n_c, n_h = len(cands), len(hist)
    lo = seq_ptr[u0]
    n_a = _count_before(seq_ts, lo, seq_ptr[u0 + 1], cutoff)
    for e in range(lo, lo + n_a):
        item_mark[seq_item[e]] |= IN_A
    # A history item tied with the cutoff is not before it: no chain passes through it.
    usable = np.empty(n_h, dtype=np.int64)
    recency = np.empty(n_h)  # decay^(history items after it)
    n_use = 0
    for j in range(n_h):
        h = hist[j]
        if item_mark[h] & IN_A:
            item_mark[h] = IN_A | (j + 1)
            usable[n_use] = h
            recency[n_use] = decay ** (n_h - 1 - j)
            n_use += 1
    own = np.full(n_c, -1, dtype=np.int64)  # the candidate's (last) history position
    for ci in range(n_c):
        for j in range(n_h):
            if hist[j] == cands[ci]:
                own[ci] = j

    # -- chains: the similar users of every candidate, each visited once --------------
    n_pairs = 0
    for ci in range(n_c):
        n_pairs += in_ptr[cands[ci] + 1] - in_ptr[cands[ci]]
    pair_c = np.empty(n_pairs, dtype=np.int64)
    pair_k = np.empty(n_pairs, dtype=np.int64)
    u1s = np.empty(n_pairs, dtype=np.int64)
    n_pairs = 0
    n_u1 = 0
    for ci in range(n_c):
        c = cands[ci]
        for e in range(in_ptr[c], in_ptr[c + 1]):
            u = in_user[e]
            if in_ts[e] >= cutoff or u == u0:
                continue
            if user_slot[u] < 0:
                user_slot[u] = n_u1
                u1s[n_u1] = u
                n_u1 += 1
            pair_c[n_pairs] = ci
            pair_k[n_pairs] = user_slot[u]
            n_pairs += 1
    hits = np.zeros((n_u1, max(n_h, 1)), dtype=np.bool_)
    jaccard = np.zeros(n_u1)
    similar = np.zeros(n_u1, dtype=np.bool_)
    for k in range(n_u1):
        u = u1s[k]
        user_slot[u] = -1
        o, size, hit = 0, 0, False
        for e in range(out_ptr[u], out_ptr[u + 1]):
            if out_ts[e] >= cutoff:
                continue
            m = item_mark[out_item[e]]
            size += 1
            if m & IN_A:
                o += 1
            if m & LOW:
                hits[k, (m & LOW) - 1] = True
                hit = True
        jaccard[k] = o / max(n_a + size - o, 1)
        similar[k] = o >= min_overlap and hit
    users = np.zeros(n_c, dtype=np.int64)
    summed = np.zeros(n_c)
    via = np.zeros((n_c, n_h), dtype=np.int64)
    last = np.full(n_c, -1, dtype=np.int64)  # a duplicate edge (c, u1) counts once
    for p in range(n_pairs):
        ci, k = pair_c[p], pair_k[p]
        if not similar[k] or last[ci] == k:
            continue
        last[ci] = k
        mine = own[ci]
        through = False  # i0 = c itself is no chain
        for j in range(n_h):
            if hits[k, j] and j != mine:
                through = True
                via[ci, j] += 1
        if through:
            users[ci] += 1
            summed[ci] += jaccard[k]

    # -- score: every user before the cutoff ------------------------------------------
    # overlap[u] = |A ∩ B_u| before the cutoff, carried over from u0's previous prompt.
    if run[0] != u0 or run[1] > cutoff:
        if run[0] >= 0:
            walk = 0
            for e in range(run[2]):
                walk += a_len[e]
            if walk > len(overlap) // 4:  # a memset beats that many scattered writes
                overlap[:] = 0
            else:
                before = seq_ptr[run[0]]
                for e in range(run[2]):
                    a = seq_item[before + e]
                    for x in range(aud_ptr[a], aud_ptr[a] + a_len[e]):
                        overlap[aud_user[x]] = 0
        run[2] = 0
    for e in range(n_a):
        a = seq_item[lo + e]
        start = a_len[e] if e < run[2] else 0
        end = _count_before(aud_ts, aud_ptr[a], aud_ptr[a + 1], cutoff)
        for x in range(aud_ptr[a] + start, aud_ptr[a] + end):
            overlap[aud_user[x]] += 1
        a_len[e] = end
    run[0], run[1], run[2] = u0, cutoff, n_a
    # Only the candidates' users enter the score: a row of ``at`` for each of them who
    # meets the closure (where each usable history item stands in its sequence, -1: not
    # chosen), to weigh the candidate by how close it stands.
    c_len = np.empty(n_c, dtype=np.int64)
    for ci in range(n_c):
        s = aud_ptr[cands[ci]]
        c_len[ci] = _count_before(aud_ts, s, aud_ptr[cands[ci] + 1], cutoff)
    at_user = np.empty(c_len.sum(), dtype=np.int64)
    n_at = 0
    for ci in range(n_c):
        s = aud_ptr[cands[ci]]
        for x in range(s, s + c_len[ci]):
            u = aud_user[x]
            if u != u0 and user_slot[u] < 0 and overlap[u] >= min_overlap:
                user_slot[u] = n_at
                at_user[n_at] = u
                n_at += 1
    h_len = np.empty(n_use, dtype=np.int64)
    h_weight = np.empty(n_use)
    for j in range(n_use):
        s = aud_ptr[usable[j]]
        h_len[j] = _count_before(aud_ts, s, aud_ptr[usable[j] + 1], cutoff)
        h_weight[j] = recency[j] / np.sqrt(max(h_len[j], 1))
    at = np.full((n_at, max(n_use, 1)), -1, dtype=np.int64)
    for j in range(n_use):
        s = aud_ptr[usable[j]]
        for x in range(s, s + h_len[j]):
            k = user_slot[aud_user[x]]
            if k >= 0:
                at[k, j] = aud_pos[x]
    size_of = np.full(n_at, -1, dtype=np.int64)
    score = np.zeros(n_c)
    for ci in range(n_c):
        c = cands[ci]
        s = aud_ptr[c]
        audience, total = 0, 0.0
        for x in range(s, s + c_len[ci]):
            u = aud_user[x]
            if u == u0:
                continue
            audience += 1
            k = user_slot[u]
            if k < 0:  # not similar
                continue
            # A candidate in the history is no hop to itself: its own term is left out.
            # Every term is positive, so w > 0 iff u chose a usable history item but c.
            w = 0.0
            for j in range(n_use):
                if at[k, j] >= 0 and usable[j] != c:
                    w += h_weight[j] * near[abs(aud_pos[x] - at[k, j])]
            if w > 0:
                o = overlap[u]
                if size_of[k] < 0:
                    size_of[k] = _count_before(seq_ts, seq_ptr[u], seq_ptr[u + 1], cutoff)
                total += o / max(n_a + size_of[k] - o, 1) * w
        score[ci] = total / np.sqrt(max(audience, 1))

    # -- leave the workspace as it was ----------------------------------------------------
    for k in range(n_at):
        user_slot[at_user[k]] = -1
    for e in range(lo, lo + n_a):
        item_mark[seq_item[e]] = 0
    paths = via.sum(axis=1)
    top = np.full((n_c, via_keep), -1, dtype=np.int64)
    top_users = np.zeros((n_c, via_keep), dtype=np.int64)
    for ci in range(n_c):
        for r in range(via_keep):
            best = -1
            for j in range(n_h):  # the most users, then the later position; not taken yet
                if via[ci, j] > 0 and (best < 0 or via[ci, j] >= via[ci, best]):
                    taken = False
                    for q in range(r):
                        taken |= top[ci, q] == j
                    if not taken:
                        best = j
            if best < 0:
                break
            top[ci, r] = best
            top_users[ci, r] = via[ci, best]
    return users, paths, summed, score, top, top_users


@njit(cache=True, nogil=True)
def batch_evidence(
    seq_ptr, seq_item, seq_ts, out_ptr, out_item, out_ts, in_ptr, in_user, in_ts,
    aud_ptr, aud_user, aud_ts, aud_pos,
    uids, cutoffs, hist_at, hist, cand_at, cands, min_overlap, via_keep, decay, near,
    item_mark, user_slot, overlap, a_len, run,
):  # fmt: skip
    """``context_evidence`` for a batch of prompts: prompt k has user ``uids[k]``, the
    history ``hist[hist_at[k]:hist_at[k + 1]]`` and the candidates ``cands[cand_at[k]:
    cand_at[k + 1]]``. One entry per candidate of the batch, in that order; ``via``
    holds places in ``hist`` (-1 pads). One call a batch: called once per prompt from
    Python, a prompt cost 0.26 ms at 1M interactions against 0.21 in the batch."""
    n = cand_at[len(uids)]
    users = np.zeros(n, dtype=np.int64)
    paths = np.zeros(n, dtype=np.int64)
    summed = np.zeros(n)
    score = np.zeros(n)
    via = np.full((n, via_keep), -1, dtype=np.int64)
    via_users = np.zeros((n, via_keep), dtype=np.int64)
    for k in range(len(uids)):
        a, b, h = cand_at[k], cand_at[k + 1], hist_at[k]
        u, p, sm, sc, top, top_n = context_evidence(
            seq_ptr, seq_item, seq_ts, out_ptr, out_item, out_ts, in_ptr, in_user, in_ts,
            aud_ptr, aud_user, aud_ts, aud_pos,
            uids[k], cutoffs[k], hist[h : hist_at[k + 1]], cands[a:b], min_overlap,
            via_keep, decay, near, item_mark, user_slot, overlap, a_len, run,
        )  # fmt: skip
        users[a:b], paths[a:b], summed[a:b], score[a:b] = u, p, sm, sc
        via_users[a:b] = top_n
        for r in range(b - a):
            for q in range(via_keep):
                if top[r, q] >= 0:
                    via[a + r, q] = h + top[r, q]
    return users, paths, summed, score, via, via_users


@njit(cache=True, nogil=True)
def sample_chains(
    seq_ptr, seq_item, out_ptr, out_item, out_ts, in_ptr, in_user, in_ts,
    u0, p, t, t_ts, hist, min_overlap, item_mark,
):  # fmt: skip
    """Every chain u0 -> i0 -> u1 -> t of one training sample (the chains job, METHOD §3):
    (u1, i0, history position of i0, |A ∩ B|, |B|, u1's edge time to i0 and to t).

    A = u0's first ``p`` items; u1 among t's capped users before t_ts (not u0); B = u1's
    capped items before t_ts; closure |A ∩ B| >= min_overlap; i0 a history item in B
    other than t. ``item_mark`` is the workspace's (zero before and after).
    """
    lo = seq_ptr[u0]
    for e in range(lo, lo + p):
        item_mark[seq_item[e]] |= IN_A
    for j in range(len(hist)):
        item_mark[hist[j]] = (item_mark[hist[j]] & IN_A) | (j + 1)
    n = 0
    for e in range(in_ptr[t], in_ptr[t + 1]):
        if in_ts[e] < t_ts and in_user[e] != u0:
            n += out_ptr[in_user[e] + 1] - out_ptr[in_user[e]]
    u1 = np.empty(n, dtype=np.int64)
    i0 = np.empty(n, dtype=np.int64)
    j0 = np.empty(n, dtype=np.int64)
    ov = np.empty(n, dtype=np.int64)
    size = np.empty(n, dtype=np.int64)
    u1_i0 = np.empty(n, dtype=np.int64)
    u1_t = np.empty(n, dtype=np.int64)
    n = 0
    for e in range(in_ptr[t], in_ptr[t + 1]):
        u = in_user[e]
        if in_ts[e] >= t_ts or u == u0:
            continue
        o, b = 0, 0
        for x in range(out_ptr[u], out_ptr[u + 1]):
            if out_ts[x] < t_ts:
                b += 1
                if item_mark[out_item[x]] & IN_A:
                    o += 1
        if o < min_overlap:
            continue
        for x in range(out_ptr[u], out_ptr[u + 1]):
            item = out_item[x]
            if out_ts[x] < t_ts and item != t and item_mark[item] & LOW:
                u1[n], i0[n], j0[n] = u, item, (item_mark[item] & LOW) - 1
                ov[n], size[n], u1_i0[n], u1_t[n] = o, b, out_ts[x], in_ts[e]
                n += 1
    for e in range(lo, lo + p):
        item_mark[seq_item[e]] = 0
    for j in range(len(hist)):
        item_mark[hist[j]] = 0
    return u1[:n], i0[:n], j0[:n], ov[:n], size[:n], u1_i0[:n], u1_t[:n]
