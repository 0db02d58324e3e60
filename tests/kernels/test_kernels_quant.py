"""Group quantisation: exact bit packing, hand-checked round trips, the scale/2 error bound per bit width,
and the Triton kernels producing the reference's bytes exactly."""

from __future__ import annotations

import pytest
import torch

from precog.kernels import dequantize, dequantize_ref, pack_codes, quantize, quantize_ref, unpack_codes

FLOAT16_UNIT_ROUNDOFF = 2.0**-11


def test_packing_puts_the_first_value_in_the_lowest_bits():
    two_bit = pack_codes(torch.tensor([[1, 2, 3, 0, 3, 3, 3, 3]]), bits=2)
    assert two_bit.tolist() == [[0b00_11_10_01, 0b11_11_11_11]]
    four_bit = pack_codes(torch.tensor([[0xA, 0x3, 0x0, 0xF]]), bits=4)
    assert four_bit.tolist() == [[0x3A, 0xF0]]
    eight_bit = pack_codes(torch.tensor([[0, 7, 255]]), bits=8)
    assert eight_bit.tolist() == [[0, 7, 255]] and eight_bit.dtype == torch.uint8


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_unpack_inverts_pack_for_every_code(bits, generator):
    codes = torch.randint(0, 1 << bits, (5, 64), generator=generator)
    packed = pack_codes(codes, bits)
    assert packed.shape == (5, 64 * bits // 8)
    assert torch.equal(unpack_codes(packed, bits), codes.to(torch.int32))


def test_hand_checked_two_bit_groups():
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0, 0.0, 0.4, 2.6, 3.0]])
    q = quantize_ref(x, bits=2, group_size=4)
    assert q.scale.tolist() == [[1.0, 1.0]] and q.zero.tolist() == [[0.0, 0.0]]
    assert unpack_codes(q.packed, 2).tolist() == [[0, 1, 2, 3, 0, 0, 3, 3]]
    assert dequantize_ref(q).tolist() == [[0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 3.0, 3.0]]


def test_constant_group_round_trips_exactly():
    x = torch.full((2, 8), 1.5)
    q = quantize_ref(x, bits=4, group_size=8)
    assert q.scale.tolist() == [[0.0], [0.0]]
    assert torch.equal(dequantize_ref(q), x)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("group_size", [8, 32])
def test_round_trip_error_is_at_most_half_a_step(bits, group_size, generator):
    x = torch.randn((6, 3, 64), generator=generator) * 4 + 1
    q = quantize_ref(x, bits, group_size)
    error = (dequantize_ref(q) - x).abs().reshape(-1, 64 // group_size, group_size)
    scale, zero = q.scale.float(), q.zero.float()
    top = zero + ((1 << bits) - 1) * scale
    # half a step, plus float16 rounding of the stored group minimum and maximum
    slack = FLOAT16_UNIT_ROUNDOFF * (zero.abs() + top.abs()) + 1e-6
    bound = scale / 2 + slack
    assert (error <= bound[..., None]).all()
    assert error.max() > 0.25 * scale.max()  # the bound is tight, not vacuous


def test_bytes_held_are_codes_plus_float16_metadata():
    q = quantize_ref(torch.randn(10, 64), bits=2, group_size=32)
    assert q.packed.shape == (10, 16) and q.scale.shape == (10, 2)
    assert q.nbytes == 10 * 16 + 2 * (10 * 2 * 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("bits", "group_size", "shape"), [(2, 16, (5, 3, 64)), (4, 32, (37, 32)), (8, 8, (2, 16))]
)
def test_triton_matches_reference_bit_for_bit(
    bits, group_size, shape, dtype, generator, device, triton_available
):
    x = (torch.randn(shape, generator=generator) * 3).to(dtype).to(device)
    kernel = quantize(x, bits, group_size, backend="triton")
    reference = quantize_ref(x, bits, group_size)
    assert torch.equal(kernel.packed, reference.packed)
    assert torch.equal(kernel.scale, reference.scale) and torch.equal(kernel.zero, reference.zero)
    assert torch.equal(dequantize(kernel, backend="triton"), dequantize_ref(reference))
    rebuilt = dequantize(kernel, dtype, backend="triton")
    assert rebuilt.shape == x.shape and rebuilt.dtype == dtype
    # the final cast may round a tie differently (the interpreter is not round-to-nearest-even): one ulp
    torch.testing.assert_close(rebuilt, dequantize_ref(reference, dtype), rtol=2**-7, atol=0)


def test_packing_rejects_codes_that_would_spill_into_a_neighbour():
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        pack_codes(torch.tensor([[0, 4, 1, 2]]), bits=2)
    with pytest.raises(ValueError, match="multiple of 2"):
        pack_codes(torch.tensor([[1, 2, 3]]), bits=4)
    with pytest.raises(ValueError, match="bits"):
        unpack_codes(torch.zeros(1, 2, dtype=torch.uint8), bits=1)


def test_rejects_what_cannot_be_quantised():
    x = torch.randn(4, 32)
    with pytest.raises(ValueError, match="bits"):
        quantize(x, bits=3, group_size=8)
    with pytest.raises(ValueError, match="power of two"):
        quantize(x, bits=4, group_size=12)
    with pytest.raises(ValueError, match="multiple of group_size"):
        quantize(torch.randn(4, 24), bits=4, group_size=16)
    with pytest.raises(ValueError, match="finite"):
        quantize(torch.tensor([[float("inf")] * 8]), bits=8, group_size=8)
    with pytest.raises(ValueError, match="floating-point"):
        quantize(torch.ones(4, 8, dtype=torch.int32), bits=8, group_size=8)
