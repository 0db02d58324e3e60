"""OjaKV (arXiv 2509.21623): the low-rank bases its middle tokens are stored in, and how they adapt.

A token's key k (RoPE applied) and value v of one KV head are kept as coefficients c = Uᵀk in an
orthonormal basis U [D, r], and read back as U c. U starts from an offline PCA of the model's own K/V
(the top-r eigenvectors of the uncentred second moment, which minimise ‖k - UUᵀk‖² over the data) and
follows each sequence with Oja's subspace rule: U ← orthonormalise(U + η·C·U/‖C‖₂), C = XᵀX / n
over a batch X of that sequence's vectors. Dividing by the spectral norm makes η scale-free (keys of
different layers differ in norm by orders of magnitude); η = 1 repeated is a power iteration towards
the batch's own top-r subspace, a small η a gentle pull from where U is.

Ratio mapping: a request's `ratio` is the share of a middle token's K/V bytes removed, so the rank is
r = round(D · (1 - ratio)) (at least 1): ratio 0 keeps the full rank D (exact up to rounding), 0.5
halves the middle tokens' KV bytes, 0.9 keeps a tenth. Sinks and the recent window stay full rank,
so the bytes held for a whole sequence are (full-rank tokens · D + middle tokens · r) / (T · D) of
the full cache, plus the sequence's bases (2 · layers · KV heads · D · r floats).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class OjaKVSettings:
    """n_sink first tokens and the n_recent most recent stay full rank; the middle goes low rank.

    prefill_eta / prefill_steps: the full update of each basis on the prompt's middle tokens.
    migrate_every: in decode, once the recent window has grown by this many tokens, its oldest ones
    move into the low-rank store (freeing a full-rank block when it equals the block size), after a
    light update (decode_eta, one step) of the basis on exactly those tokens.
    """

    n_sink: int = 4
    n_recent: int = 32
    prefill_eta: float = 1.0
    prefill_steps: int = 2
    migrate_every: int = 16
    decode_eta: float = 0.1

    def __post_init__(self) -> None:
        if self.n_sink < 0 or self.n_recent < 0 or self.migrate_every < 1 or self.prefill_steps < 0:
            raise ValueError(f"invalid OjaKV settings {self}")


def rank_for_ratio(ratio: float, head_dim: int) -> int:
    """The basis rank for a compression ratio: round(head_dim · (1 - ratio)), at least 1."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"kv_compression ratio must be in [0, 1), got {ratio}")
    return max(1, min(head_dim, round(head_dim * (1.0 - ratio))))


def orthonormalise(u: torch.Tensor) -> torch.Tensor:
    """[..., D, r] -> orthonormal columns spanning the same space (QR, signs kept so U ≈ U' stays close)."""
    q, r = torch.linalg.qr(u)
    signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    return q * torch.where(signs == 0, torch.ones_like(signs), signs).unsqueeze(-2)


def oja_update(basis: torch.Tensor, x: torch.Tensor, eta: float, steps: int = 1) -> torch.Tensor:
    """Oja's subspace rule: basis [..., D, r], batch x [..., n, D] -> the updated orthonormal basis."""
    if x.shape[-2] == 0 or steps == 0:
        return basis
    x = x.float()
    cov = x.transpose(-1, -2) @ x / x.shape[-2]  # [..., D, D]
    norm = torch.linalg.matrix_norm(cov, ord=2).clamp_min(torch.finfo(torch.float32).tiny)
    cov = cov / norm[..., None, None]
    for _ in range(steps):
        basis = orthonormalise(basis + eta * cov @ basis)
    return basis


def principal_bases(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA without centring: x [..., n, D] -> eigenvectors [..., D, D] by falling eigenvalue, eigenvalues."""
    x = x.double()
    eigenvalues, eigenvectors = torch.linalg.eigh(x.transpose(-1, -2) @ x / x.shape[-2])
    return eigenvectors.flip(-1).float(), eigenvalues.flip(-1).float()


def reconstruction_error(x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Relative error ‖x - U Uᵀ x‖ / ‖x‖ of x [..., n, D] in basis [..., D, r], per leading index."""
    projected = x @ basis @ basis.transpose(-1, -2)
    return (x - projected).norm(dim=(-2, -1)) / x.norm(dim=(-2, -1)).clamp_min(1e-30)
