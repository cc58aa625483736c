"""The quantization attack (wrapcli/analyses/quantization.py) against a hand computation in
plain Python: round to nearest per group (absmax, round half to even) and bitsandbytes'
NF4 (nearest code value per block, ties to the lower code); and, where bitsandbytes is
installed, NF4 against its own quantize -> dequantize round trip."""

import pytest
import torch

from wrapcli.analyses.quantization import NF4, nf4, rtn


def hand_rtn(rows, bits, group):
    """Round to nearest, one output channel (a list) at a time, in plain Python."""
    qmax = 2 ** (bits - 1) - 1
    out = []
    for row in rows:
        g = group or len(row)
        new = []
        for start in range(0, len(row), g):
            chunk = row[start:start + g]
            scale = max(abs(x) for x in chunk) / qmax or 1.0
            new += [max(-qmax, min(qmax, round(x / scale))) * scale for x in chunk]
        out.append(new)
    return out


def hand_nf4(values, block):
    out = []
    for start in range(0, len(values), block):
        chunk = values[start:start + block]
        absmax = max(abs(x) for x in chunk)
        for x in chunk:
            v = x / absmax if absmax else 0.0
            dist = [abs(v - c) for c in NF4]
            best = min(range(len(NF4)), key=lambda i: (dist[i], i))  # ties to the lower code
            out.append(NF4[best] * absmax)
    return out


@pytest.mark.parametrize("bits, group", [(4, 4), (4, 0), (8, 3), (2, 5)])
def test_round_to_nearest_matches_the_hand_computation(bits, group):
    torch.manual_seed(bits + group)
    w = torch.randn(6, 10)  # float32 weights, computed in float32; the hand computation in float64
    want = torch.tensor(hand_rtn(w.tolist(), bits, group))
    assert torch.allclose(rtn(w, bits, group), want, rtol=0, atol=1e-6)
    # GPT-2's Conv1D keeps (inputs, outputs): the groups run along the inputs of each output
    assert torch.allclose(rtn(w.t().contiguous(), bits, group, out_axis=1), want.t(), rtol=0, atol=1e-6)


def test_round_to_nearest_keeps_the_grid_and_zero_groups():
    w = torch.tensor([[0.0, 0.0, 0.0, 0.0], [7.0, -3.5, 1.0, 0.5]])
    got = rtn(w, 4, 4)
    assert got[0].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert got[1].tolist() == [7.0, -4.0, 1.0, 0.0]  # scale 1: -3.5 rounds half to even, 0.5 to 0


@pytest.mark.parametrize("block", [64, 7])
def test_nf4_matches_the_hand_computation(block):
    torch.manual_seed(block)
    w = torch.randn(9, 23)
    want = torch.tensor(hand_nf4(w.reshape(-1).tolist(), block)).reshape(9, 23)
    assert torch.allclose(nf4(w, block), want, rtol=0, atol=1e-6)
    # the code values themselves survive exactly, and a value between two codes goes down
    codes = torch.tensor([list(NF4)])
    assert torch.equal(nf4(codes, 16), codes)
    mid = (NF4[9] + NF4[10]) / 2
    assert nf4(torch.tensor([[mid, 1.0]]), 2)[0, 0] == pytest.approx(NF4[9])


def test_nf4_equals_bitsandbytes_round_trip():
    bnb = pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    w = torch.randn(32, 64)
    q, state = bnb.functional.quantize_4bit(w, blocksize=64, quant_type="nf4")
    assert torch.equal(nf4(w, 64), bnb.functional.dequantize_4bit(q, state).to(w.dtype))
