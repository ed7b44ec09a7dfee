"""Parallel layouts of one model instance: TP, PP, EP, DP-attention, KVP (Medha), Helix.

A layout is written as ``key=value`` pairs separated by commas, e.g. ``tp=8``, ``tp=4,pp=2``,
``dp=8,ep=8``, ``kvp=4,tpa=8,tpf=32,ep=1``.

======  =============================================================================================
key     meaning
======  =============================================================================================
tp      tensor-parallel width of attention; an alias of ``tpa`` (give one or the other)
tpa     TP width inside one attention replica (query heads split ``tpa`` ways)
kvp     KV-parallel width: each sequence's KV cache is sharded along the sequence over ``kvp`` GPUs
dp      data-parallel attention replicas (each holds its own sequences)
tpf     TP width of the FFN / of each expert
ep      expert-parallel width (MoE only)
tpo     TP width of the attention output projection: ``tpa·kvp`` (Helix: TP = N, default when the
        FFN re-uses all N GPUs) or ``tpa`` (Medha: partial outputs merged inside each TPA group,
        default when the FFN group is smaller than N)
pp      pipeline stages
======  =============================================================================================

Semantics (Helix notation, SEED-NOTES §1.1–1.2): the attention group is ``N = dp × tpa × kvp`` GPUs;
the FFN runs on ``tpf × ep`` of them (``tpf`` defaults to ``N / ep``). When ``tpf × ep < N`` the FFN
is replicated ``N / (tpf × ep)`` times (Medha-style KVP: "FFN on a fixed TP group of, e.g., 8"),
which is only allowed without DP attention. GPUs per instance = ``N × pp``.

Named patterns: TP ``tp=8``; TP+PP ``tp=4,pp=2``; DP attention + EP (DeepSeek production)
``dp=8,ep=8``; TEP (TP attention + EP FFN) ``tp=8,ep=8``; Helix ``kvp=4,tpa=8,tpf=32,ep=1``;
Medha ``kvp=8,tpa=1,tpf=8,tpo=1`` or ``kvp=4,tpa=8,tpf=8``.
"""

from __future__ import annotations

from dataclasses import dataclass

from simcluster.catalog.models import ModelSpec
from simcluster.errors import UserError

KEYS = ("tp", "tpa", "kvp", "dp", "tpf", "ep", "tpo", "pp")


@dataclass(frozen=True)
class Layout:
    """A resolved layout (every default filled in; ``tp`` equals ``tpa``). Build with
    :meth:`parse` or :meth:`of`; :meth:`validate` checks it against a model and an NVLink domain."""

    tp: int = 1
    pp: int = 1
    ep: int = 1
    dp: int = 1
    kvp: int = 1
    tpa: int = 1
    tpf: int = 1
    tpo: int = 1

    # ------------------------------------------------------------------ construction
    @classmethod
    def parse(cls, text: "str | Layout", *, field: str | None = "layout") -> "Layout":
        """Parse ``"kvp=4,tpa=8,tpf=32"``; unknown keys and bad values are a :class:`UserError`."""
        if isinstance(text, Layout):
            return text
        raw = str(text).strip()
        if not raw:
            raise UserError("empty layout; write e.g. 'tp=8' or 'kvp=4,tpa=8,tpf=32'", where=field)
        values: dict[str, int] = {}
        for part in raw.split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            key = key.strip().lower()
            if not sep:
                raise UserError(f"expected key=value, got {part!r}", where=field)
            if key not in KEYS:
                raise UserError(f"unknown layout key {key!r}; known: {', '.join(KEYS)}", where=field)
            if key in values:
                raise UserError(f"layout key {key!r} given twice", where=field)
            value = value.strip()
            if not value.isdigit() or int(value) < 1:
                raise UserError(f"{key} must be a positive integer, got {value!r}", where=field)
            values[key] = int(value)
        return cls.of(**values, field=field)

    @classmethod
    def of(cls, *, tp: int | None = None, tpa: int | None = None, kvp: int = 1, dp: int = 1,
           tpf: int | None = None, ep: int = 1, tpo: int | None = None, pp: int = 1,
           field: str | None = "layout") -> "Layout":
        """Resolve defaults and check the arithmetic that does not depend on the model."""
        for key, v in (("tp", tp), ("tpa", tpa), ("kvp", kvp), ("dp", dp), ("tpf", tpf), ("ep", ep),
                       ("tpo", tpo), ("pp", pp)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise UserError(f"{key} must be a positive integer, got {v!r}", where=field)
        if tp is not None and tpa is not None and tp != tpa:
            raise UserError(f"tp={tp} and tpa={tpa} disagree (tp is an alias of tpa)", where=field)
        a = tpa if tpa is not None else (tp if tp is not None else 1)
        n = dp * a * kvp
        if tpf is None:
            if n % ep:
                raise UserError(f"ep={ep} must divide the attention group dp×tpa×kvp = {n}", where=field)
            tpf = n // ep
        group = tpf * ep
        if n % group:
            raise UserError(
                f"the FFN group tpf×ep = {tpf}×{ep} = {group} must divide the attention group "
                f"dp×tpa×kvp = {n}", where=field)
        if group < n and dp > 1:
            raise UserError(
                f"tpf×ep = {group} is smaller than the attention group ({n}): a replicated FFN is only "
                f"supported without DP attention (dp=1)", where=field)
        if tpo is None:
            tpo = a * kvp if group == n else a
        if tpo not in (a, a * kvp):
            raise UserError(f"tpo={tpo} must be tpa ({a}, Medha) or tpa×kvp ({a * kvp}, Helix)", where=field)
        return cls(tp=a, pp=pp, ep=ep, dp=dp, kvp=kvp, tpa=a, tpf=tpf, tpo=tpo)

    # ------------------------------------------------------------------ derived sizes
    @property
    def attention_group(self) -> int:
        """N = dp × tpa × kvp: the GPUs of one pipeline stage."""
        return self.dp * self.tpa * self.kvp

    @property
    def ffn_group(self) -> int:
        return self.tpf * self.ep

    @property
    def ffn_replicas(self) -> int:
        return self.attention_group // self.ffn_group

    @property
    def gpus(self) -> int:
        """GPUs per instance: N × pp."""
        return self.attention_group * self.pp

    @property
    def replica_gpus(self) -> int:
        """GPUs of one attention replica: tpa × kvp."""
        return self.tpa * self.kvp

    @property
    def is_helix(self) -> bool:
        return self.kvp > 1 and self.tpo == self.tpa * self.kvp

    @property
    def is_medha(self) -> bool:
        return self.kvp > 1 and self.tpo == self.tpa

    @property
    def kind(self) -> str:
        """A short name of the pattern, for reports."""
        if self.is_helix:
            return "helix"
        if self.is_medha:
            return "medha-kvp"
        if self.dp > 1:
            return "dp-attention+ep" if self.ep > 1 else "dp-attention"
        if self.ep > 1:
            return "tp-attention+ep"
        return "tp" if self.pp == 1 else "tp+pp"

    def __str__(self) -> str:
        return (f"dp={self.dp},tpa={self.tpa},kvp={self.kvp},tpo={self.tpo},tpf={self.tpf},ep={self.ep},"
                f"pp={self.pp}")

    # ------------------------------------------------------------------ validation
    def validate(self, model: ModelSpec, *, domain_size: int | None = None, allow_cross_domain: bool = False,
                 field: str | None = "layout") -> "Layout":
        """Check the layout against ``model`` and an NVLink domain of ``domain_size`` GPUs.

        Raises :class:`UserError` naming the offending key. Returns ``self``.
        """
        q = model.num_attention_heads
        k = 1 if model.is_mla else model.num_kv_heads
        kv_name = "the MLA latent KV (one head shared by all query heads)" if model.is_mla else f"{k} KV heads"
        if q % self.tpa:
            raise UserError(f"tpa={self.tpa} must divide the model's {q} query heads", where=field)
        if self.tpa <= k and k % self.tpa:
            raise UserError(f"tpa={self.tpa} must divide the model's {k} KV heads", where=field)
        if self.tpa > k and self.tpa % k:
            raise UserError(f"tpa={self.tpa} must be a multiple of the model's {k} KV heads", where=field)
        if self.kvp > 1 and self.tpa > k:
            raise UserError(
                f"with kvp={self.kvp} (KV-parallel attention) tpa={self.tpa} must not exceed {kv_name}: "
                f"TPA ≤ K keeps the KV cache from being duplicated (Helix)", where=field)
        out_dim = q * (model.v_head_dim if model.is_mla else model.head_dim)
        if out_dim % self.tpo:
            raise UserError(f"tpo={self.tpo} must divide the attention output width {out_dim}", where=field)
        if self.ep > 1:
            if not model.is_moe:
                raise UserError(f"ep={self.ep} needs an MoE model; {model.name} is dense", where=field)
            if self.ep > model.num_experts:
                raise UserError(f"ep={self.ep} exceeds the model's {model.num_experts} experts", where=field)
            # ep that does not divide the experts: ceil(E/ep) expert slots per GPU, the spare ones holding
            # replicas (redundant experts: SGLang --ep-num-redundant-experts, TRT-LLM's EPLB slots), as
            # wide-EP deployments run DeepSeek's 256 experts on 24, 48 or 72 GPUs (see expert_slots)
        if model.is_moe and model.moe_intermediate_size % self.tpf:
            raise UserError(
                f"tpf={self.tpf} must divide the expert FFN width {model.moe_intermediate_size}", where=field)
        if model.dense_layers and model.intermediate_size % self.ffn_group:
            key = "tpf" if self.ep == 1 else "tpf×ep"
            raise UserError(
                f"{key}={self.ffn_group} must divide the dense FFN width {model.intermediate_size}", where=field)
        if self.pp > model.num_layers:
            raise UserError(f"pp={self.pp} exceeds the model's {model.num_layers} layers", where=field)
        n = self.attention_group
        if domain_size is not None and n > domain_size and not allow_cross_domain:
            raise UserError(
                f"the layout's collective group has {n} GPUs (dp×tpa×kvp) but an NVLink domain holds "
                f"{domain_size}; allow cross-domain groups to run collectives over the NIC", where=field)
        return self


def expert_slots(num_experts: int, ep: int) -> int:
    """Expert slots per GPU of an ``ep``-way expert-parallel group: ``ceil(E / ep)``. Where ``ep`` does
    not divide ``E`` the ``ep · slots − E`` spare slots hold replicas of experts (redundant experts);
    the routed load per GPU is still ``1/ep`` of the layer's under balanced routing."""
    return -(-int(num_experts) // max(int(ep), 1))
