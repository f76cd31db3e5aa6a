"""The on-chain protocol as the daemon sees it.

Everything here is built on `oracle/abi/protocol.json`, which `make abi` generates from
`contracts/src/OracleTypes.sol`: the EIP-712 domain and type strings, the enums, struct layouts and
constants. The enums are spelled out below so type checkers know their members; importing this
module fails loudly if they ever disagree with the generated file.

    >>> spec = parse_model_spec("cheapest;max_price=20000")
    >>> spec.policy, spec.options
    (<PolicyClass.CHEAPEST: 1>, {'max_price': '20000'})
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from importlib.resources import files
from typing import Any

import coincurve
from eth_abi import encode
from eth_utils import keccak, to_checksum_address

PROTOCOL: dict[str, Any] = json.loads(files("oracle.abi").joinpath("protocol.json").read_text())

UINT256_MOD = 2**256


class ProtocolMismatch(RuntimeError):
    """The Python view of the protocol disagrees with the generated protocol.json (run `make abi`)."""


class ResultType(IntEnum):
    TEXT = 0
    BOOL = 1
    UINT = 2
    INT = 3
    CHOICE = 4
    JSON = 5
    ABI = 6


class Status(IntEnum):
    NONE = 0
    SUCCESS = 1
    FAILURE = 2


class ReasonCode(IntEnum):
    NONE = 0
    MALFORMED = 1
    MODEL_REFUSED = 2
    CONTENT_FILTERED = 3
    TRUNCATED = 4
    PROVIDERS_UNAVAILABLE = 5
    DEADLINE_TOO_SHORT = 6
    UNKNOWN_MODEL = 7
    INVALID_MODEL_SPEC = 8
    INVALID_PROMPT = 9
    PROMPT_TOO_LARGE = 10
    FEE_TOO_LOW = 11
    BUDGET_EXHAUSTED = 12
    PAYMENT_FAILED = 13
    UNSUPPORTED = 14
    INTERNAL_ERROR = 15
    PRICE_CAP_TOO_LOW = 16
    DATA_POLICY_UNAVAILABLE = 17


class PolicyClass(IntEnum):
    EXACT = 0
    CHEAPEST = 1
    FASTEST = 2
    BEST = 3
    ENSEMBLE = 4


def _snake_upper(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def _check_enums() -> None:
    for enum in (ResultType, Status, ReasonCode, PolicyClass):
        generated = {_snake_upper(k): v for k, v in PROTOCOL["enums"][enum.__name__].items()}
        ours = {m.name: m.value for m in enum}
        if generated != ours:
            raise ProtocolMismatch(f"{enum.__name__}: protocol.json has {generated}, protocol.py has {ours}")


_check_enums()

EIP712_NAME: str = PROTOCOL["eip712"]["name"]
EIP712_VERSION: str = PROTOCOL["eip712"]["version"]
RESPONSE_TYPE: str = PROTOCOL["types"]["Response"]["type"]
RESPONSE_TYPEHASH: bytes = keccak(text=RESPONSE_TYPE)
OFFCHAIN_RESULT_TYPE: str = PROTOCOL["types"]["OffchainResult"]["type"]
OFFCHAIN_RESULT_TYPEHASH: bytes = keccak(text=OFFCHAIN_RESULT_TYPE)
DOMAIN_TYPEHASH = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")

MAX_LABEL_BYTES: int = PROTOCOL["constants"]["MAX_LABEL_BYTES"]
MAX_ABI_TYPE_BYTES: int = PROTOCOL["constants"]["MAX_ABI_TYPE_BYTES"]
MAX_MODEL_FALLBACKS: int = PROTOCOL["constants"]["MAX_MODEL_FALLBACKS"]
MAX_TEMPERATURE: int = PROTOCOL["constants"]["MAX_TEMPERATURE"]
# A Text, Json or Abi result may carry its maxBytes plus this much ABI framing; the other kinds one word.
RESULT_ENCODING_OVERHEAD: int = PROTOCOL["constants"]["RESULT_ENCODING_OVERHEAD"]
WORD_RESULT_BYTES: int = PROTOCOL["constants"]["WORD_RESULT_BYTES"]
_SIZED_KINDS = frozenset({ResultType.TEXT, ResultType.JSON, ResultType.ABI})
# What each kind's JSON form (`ResultSpec.to_json`) holds besides its type.
_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("max_bytes",), "bool": (), "uint": ("min", "max"), "int": ("min", "max"),
    "choice": ("labels",), "json": ("max_bytes",), "abi": ("abi_type", "max_bytes")}


def abi_type_of(struct: str) -> str:
    """The ABI tuple type of a protocol struct, e.g. `abi_type_of("Commitment")`."""
    return str(PROTOCOL["structs"][struct]["abi_type"])


# Static ABI values written as words, for the hashes and calldata built on every request (eth_abi's
# checks cost more than the hashing itself there); each writer is checked against eth_abi by the tests.

def uint_word(value: int, bits: int = 256) -> bytes:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{value} is not a uint{bits}")
    return value.to_bytes(32, "big")


def bytes32_word(value: bytes, name: str) -> bytes:
    if len(value) != 32:
        raise ValueError(f"{name} is {len(value)} bytes, not 32")
    return value


def address_word(value: str) -> bytes:
    try:
        raw = bytes.fromhex(value[2:] if value.startswith(("0x", "0X")) else value)
    except ValueError:
        raw = b""
    if len(raw) != 20:
        raise ValueError(f"address {value!r} is not 20 bytes of hex")
    return b"\0" * 12 + raw


def _to_uint(value: int) -> int:
    """Two's-complement bits of a signed bound, as the contract stores Int bounds in uint256."""
    return value % UINT256_MOD


def _to_int(value: int) -> int:
    return value - UINT256_MOD if value >= 2**255 else value


@dataclass(frozen=True)
class ResultSpec:
    """Bounds of a typed result. For INT, `min`/`max` are signed Python ints."""

    kind: ResultType
    max_bytes: int = 0
    min: int = 0
    max: int = 0
    labels: tuple[str, ...] = ()
    abi_type: str = ""

    def to_abi(self) -> tuple[Any, ...]:
        return (int(self.kind), self.max_bytes, _to_uint(self.min), _to_uint(self.max), list(self.labels),
                self.abi_type)

    @property
    def max_result_bytes(self) -> int:
        """The longest result a response may carry, as the request's commitment binds it on-chain."""
        if self.kind in _SIZED_KINDS:
            return self.max_bytes + RESULT_ENCODING_OVERHEAD
        return WORD_RESULT_BYTES

    @classmethod
    def from_abi(cls, value: Sequence[Any]) -> ResultSpec:
        kind, max_bytes, lo, hi, labels, abi_type = value
        if kind == ResultType.INT:
            lo, hi = _to_int(lo), _to_int(hi)
        # An unknown kind can only come from a contract other than ours; keep the raw number visible.
        return cls(ResultType(kind), max_bytes, lo, hi, tuple(labels), abi_type)

    def to_json(self) -> dict[str, Any]:
        """The spec as HTTP callers write it: `{"type": "uint", "min": 0, "max": 100}`, only the fields
        its kind reads."""
        doc: dict[str, Any] = {"type": self.kind.name.lower()}
        if self.kind in _SIZED_KINDS:
            doc["max_bytes"] = self.max_bytes
        if self.kind in (ResultType.UINT, ResultType.INT):
            doc.update(min=self.min, max=self.max)
        if self.kind == ResultType.CHOICE:
            doc["labels"] = list(self.labels)
        if self.kind == ResultType.ABI:
            doc["abi_type"] = self.abi_type
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> ResultSpec:
        """The inverse of `to_json`; ValueError saying what to write for anything else (untrusted input)."""
        if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
            raise ValueError('a result is an object with a "type": one of ' + ", ".join(_KIND_FIELDS))
        name = doc["type"].lower()
        if name not in _KIND_FIELDS:
            raise ValueError(f"result type {doc['type'][:40]!r} is not one of {', '.join(_KIND_FIELDS)}")
        kind = ResultType[name.upper()]
        fields = _KIND_FIELDS[name]
        unknown = sorted(set(doc) - {"type", *fields})
        if unknown:
            raise ValueError(f"a {name} result takes {', '.join(fields) or 'no other field'}, not {unknown[0]!r}")
        missing = [f for f in fields if f not in doc]
        if missing:
            raise ValueError(f"a {name} result needs {', '.join(missing)}")
        for f in ("max_bytes", "min", "max"):
            if f in doc and (not isinstance(doc[f], int) or isinstance(doc[f], bool)):
                raise ValueError(f"result.{f} must be an integer")
        if "labels" in doc and not (isinstance(doc["labels"], list)
                                    and all(isinstance(x, str) for x in doc["labels"])):
            raise ValueError("result.labels must be a list of strings")
        if "abi_type" in doc and not isinstance(doc["abi_type"], str):
            raise ValueError("result.abi_type must be a string such as '(string,uint8)'")
        spec = cls(kind, doc.get("max_bytes", 0), doc.get("min", 0), doc.get("max", 0),
                   tuple(doc.get("labels", ())), doc.get("abi_type", ""))
        if kind in (ResultType.UINT, ResultType.INT) and spec.min > spec.max:
            raise ValueError(f"result.min {spec.min} is above result.max {spec.max}")
        if kind == ResultType.UINT and spec.min < 0:
            raise ValueError("a uint result cannot have a negative min: use type int")
        if spec.max_bytes < 0:
            raise ValueError("result.max_bytes cannot be negative")
        return spec


@dataclass(frozen=True)
class RequestParams:
    callback: str
    callback_gas_limit: int
    deadline: int
    max_tokens: int
    temperature: int
    seed: int
    model_spec: str
    prompt: bytes
    result: ResultSpec

    def to_abi(self) -> tuple[Any, ...]:
        return (self.callback, self.callback_gas_limit, self.deadline, self.max_tokens, self.temperature,
                self.seed, self.model_spec, self.prompt, self.result.to_abi())

    @classmethod
    def from_abi(cls, value: Sequence[Any]) -> RequestParams:
        callback, gas, deadline, max_tokens, temperature, seed, model_spec, prompt, result = value
        return cls(to_checksum_address(callback), gas, deadline, max_tokens, temperature, seed, model_spec,
                   bytes(prompt), ResultSpec.from_abi(result))

    def hash(self) -> bytes:
        """keccak256(abi.encode(params)), the `paramsHash` of the commitment."""
        return keccak(encode([abi_type_of("RequestParams")], [self.to_abi()]))


@dataclass(frozen=True)
class Commitment:
    requester: str
    callback: str
    callback_gas_limit: int
    deadline: int
    max_result_bytes: int  # the longest result a response may carry: `ResultSpec.max_result_bytes`
    fee: int
    params_hash: bytes

    @classmethod
    def of(cls, requester: str, fee: int, params: RequestParams, params_hash: bytes | None = None) -> Commitment:
        """The commitment the oracle stores for `params`; `params_hash` when it is known already (taken
        from the emitted bytes)."""
        return cls(requester, params.callback, params.callback_gas_limit, params.deadline,
                   params.result.max_result_bytes, fee, params.hash() if params_hash is None else params_hash)

    def to_abi(self) -> tuple[Any, ...]:
        return (self.requester, self.callback, self.callback_gas_limit, self.deadline, self.max_result_bytes,
                self.fee, self.params_hash)

    @functools.cached_property
    def encoded(self) -> bytes:
        """`abi.encode(commitment)`: seven words, as it sits in calldata and as it is hashed."""
        return (address_word(self.requester) + address_word(self.callback) + uint_word(self.callback_gas_limit, 32)
                + uint_word(self.deadline, 64) + uint_word(self.max_result_bytes, 64) + uint_word(self.fee)
                + bytes32_word(self.params_hash, "params hash"))

    def hash(self) -> bytes:
        """The value the oracle stores for an open request."""
        return keccak(self.encoded)


@dataclass(frozen=True)
class Response:
    request_id: bytes
    commitment: bytes
    status: Status
    reason_code: ReasonCode
    result: bytes
    model_used: bytes
    receipt_hash: bytes

    def to_abi(self) -> tuple[Any, ...]:
        return (self.request_id, self.commitment, int(self.status), int(self.reason_code), self.result,
                self.model_used, self.receipt_hash)

    def struct_hash(self) -> bytes:
        """EIP-712 hashStruct: the type hash and each field as a word (`result` by its keccak)."""
        return keccak(RESPONSE_TYPEHASH + bytes32_word(self.request_id, "request id")
                      + bytes32_word(self.commitment, "commitment hash") + uint_word(int(self.status), 8)
                      + uint_word(int(self.reason_code), 16) + keccak(self.result)
                      + bytes32_word(self.model_used, "modelUsed") + bytes32_word(self.receipt_hash, "receipt hash"))


@dataclass(frozen=True)
class OffchainResult:
    result_id: bytes
    consumer: str
    query_hash: bytes
    status: Status
    reason_code: ReasonCode
    result: bytes
    model_used: bytes
    receipt_hash: bytes
    valid_until: int

    def to_abi(self) -> tuple[Any, ...]:
        return (self.result_id, self.consumer, self.query_hash, int(self.status), int(self.reason_code),
                self.result, self.model_used, self.receipt_hash, self.valid_until)

    def struct_hash(self) -> bytes:
        return keccak(encode(
            ["bytes32", "bytes32", "address", "bytes32", "uint8", "uint16", "bytes32", "bytes32", "bytes32",
             "uint64"],
            [OFFCHAIN_RESULT_TYPEHASH, self.result_id, self.consumer, self.query_hash, int(self.status),
             int(self.reason_code), keccak(self.result), self.model_used, self.receipt_hash, self.valid_until],
        ))


def query_hash(model_spec: str, prompt: bytes, spec: ResultSpec) -> bytes:
    """The question an `OffchainResult` answers, as `AIConsumer.queryHash` computes it:
    keccak256(abi.encode(modelSpec, prompt, resultSpec)). A consumer takes a result only for a query hash
    it registered."""
    return keccak(encode(["string", "bytes", abi_type_of("ResultSpec")], [model_spec, prompt, spec.to_abi()]))


def request_id(chain_id: int, oracle: str, requester: str, nonce: int) -> bytes:
    """Unique across chains, deployments and requesters: keccak(chainId, oracle, requester, nonce)."""
    return keccak(encode(["uint256", "address", "address", "uint64"], [chain_id, oracle, requester, nonce]))


@functools.cache
def domain_separator(chain_id: int, oracle: str) -> bytes:
    """(one per deployment: cached, as every signature needs it)"""
    return keccak(encode(
        ["bytes32", "bytes32", "bytes32", "uint256", "address"],
        [DOMAIN_TYPEHASH, keccak(text=EIP712_NAME), keccak(text=EIP712_VERSION), chain_id, oracle],
    ))


def typed_data_digest(chain_id: int, oracle: str, struct_hash: bytes) -> bytes:
    """EIP-712 digest under the oracle's domain: keccak(0x1901 || domainSeparator || structHash)."""
    return keccak(b"\x19\x01" + domain_separator(chain_id, oracle) + struct_hash)


def signer_of(digest: bytes, signature: bytes) -> str:
    """The address whose key made `signature` (r || s || v, v = 27/28) over `digest`: how a buyer of an
    off-chain result checks it was signed by the oracle's registered signer before handing it on."""
    if len(signature) != 65 or signature[64] not in (27, 28):
        raise ValueError("a signature is 65 bytes, r || s || v with v 27 or 28")
    public = coincurve.PublicKey.from_signature_and_message(signature[:64] + bytes([signature[64] - 27]), digest,
                                                            hasher=None)
    return to_checksum_address(keccak(public.format(compressed=False)[1:])[-20:])


def model_used(model_ids: Sequence[str]) -> bytes:
    """The `modelUsed` field: keccak of the model id, or of the sorted ids joined by "," (ensemble)."""
    if not model_ids:
        raise ValueError("model_used needs at least one model id")
    return keccak(text=",".join(sorted(model_ids)))


# ---------------------------------------------------------------- model specs

_POLICIES = {"cheapest": PolicyClass.CHEAPEST, "fastest": PolicyClass.FASTEST, "best": PolicyClass.BEST}
_VALUE_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+")
_ID_CHARS = _VALUE_CHARS | frozenset(b"/:@")
_KEY_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz_")


class InvalidModelSpec(ValueError):
    """A model spec the contract refuses; `offset` is the byte where, and `error` the custom error the
    contract reverts with there."""

    error = "InvalidModelSpec"

    def __init__(self, spec: bytes, offset: int, why: str) -> None:
        super().__init__(f"invalid model spec {spec!r} at byte {offset}: {why}")
        self.offset = offset


class DuplicateModelSpecOption(InvalidModelSpec):
    """An option's key repeats an earlier option's: the spec has no one meaning."""

    error = "DuplicateModelSpecOption"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: a policy, or an ordered list of exact model ids, plus options."""

    policy: PolicyClass
    models: tuple[str, ...] = ()
    ensemble_size: int = 1
    options: dict[str, str] = field(default_factory=dict)


def parse_model_spec(spec: str | bytes) -> ModelSpec:
    """Parse the same grammar `contracts/src/ModelSpec.sol` checks, reporting the same offsets."""
    raw = spec.encode() if isinstance(spec, str) else bytes(spec)
    target, *option_segments = raw.split(b";")
    parsed = _parse_target(raw, target)
    options: dict[str, str] = {}
    offset = len(target) + 1
    for segment in option_segments:
        key, value = _parse_option(raw, offset, offset + len(segment))
        if key in options:
            raise DuplicateModelSpecOption(raw, offset, f"option {key} is given twice; give each option once")
        options[key] = value
        offset += len(segment) + 1
    return ModelSpec(parsed.policy, parsed.models, parsed.ensemble_size, options)


def _parse_target(raw: bytes, t: bytes) -> ModelSpec:
    if t.decode("ascii", "replace") in _POLICIES:
        return ModelSpec(_POLICIES[t.decode()])
    if t.startswith(b"ensemble:"):
        if len(t) != 10 or not (ord("2") <= t[9] <= ord("9")):
            raise InvalidModelSpec(raw, 9, "ensemble size must be one digit from 2 to 9")
        return ModelSpec(PolicyClass.ENSEMBLE, ensemble_size=t[9] - ord("0"))
    ids: list[str] = []
    id_start = 0
    for i, c in enumerate(t):
        if c == ord(","):
            if i == id_start:
                raise InvalidModelSpec(raw, i, "empty model id")
            ids.append(t[id_start:i].decode())
            if len(ids) + 1 > MAX_MODEL_FALLBACKS:
                raise InvalidModelSpec(raw, i, f"more than {MAX_MODEL_FALLBACKS} model ids")
            id_start = i + 1
        elif c not in _ID_CHARS:
            raise InvalidModelSpec(raw, i, f"byte {c:#04x} not allowed in a model id")
    if len(t) == id_start:
        raise InvalidModelSpec(raw, len(t), "empty model id")
    ids.append(t[id_start:].decode())
    return ModelSpec(PolicyClass.EXACT, tuple(ids))


def _parse_option(raw: bytes, start: int, end: int) -> tuple[str, str]:
    i = start
    while i < end and raw[i] in _KEY_CHARS:
        i += 1
    if i in (start, end) or raw[i] != ord("="):
        raise InvalidModelSpec(raw, i, "an option is key=value with a key of a-z and _")
    value_start = i + 1
    for j in range(value_start, end):
        if raw[j] not in _VALUE_CHARS:
            raise InvalidModelSpec(raw, j, f"byte {raw[j]:#04x} not allowed in an option value")
    if end == value_start:
        raise InvalidModelSpec(raw, end, "empty option value")
    return raw[start:i].decode(), raw[value_start:end].decode()


ACCOUNT_MESSAGE_TITLE = "Oracle gateway: read account"
ACCOUNT_MESSAGE_HEADER = "X-Oracle-Message"  # base64 of the UTF-8 message account_message builds
ACCOUNT_SIGNATURE_HEADER = "X-Oracle-Signature"  # its EIP-191 signature: 0x + 65 bytes, r || s || v


def account_message(address: str, payee: str, nonce: str, expires: int) -> str:
    """The EIP-191 message a payer signs to read its gateway account (`GET /v1/account/{address}`): fresh
    (a nonce used once, an expiry at most ten minutes away), for one address, at one gateway (named by
    the address it is paid to, so the message reads no other operator's)."""
    return f"{ACCOUNT_MESSAGE_TITLE}\nAddress: {address}\nGateway: {payee}\nNonce: {nonce}\nExpires: {expires}"
