#!/usr/bin/env python3
"""Generate the tiny model the engine tests serve: no download, numpy and tokenizers only.

A 2-layer Llama (hidden 64, intermediate 128, 4 heads, 2 KV heads, head_dim 16) with random float32
weights in `model.safetensors` (about 0.6 MB), a byte-level BPE tokenizer trained on a few KB of text
embedded below, and a ChatML chat template. Its output is gibberish that never emits end-of-sequence,
so `max_tokens` ends every reply; `lm_head` is scaled up so greedy output still varies.

The model is written once per VERSION into `$MLXGW_TEST_ENGINES/models/tiny-llama-<VERSION>` (default
`~/.cache/mlxgw-test-engines`), atomically (a temporary directory renamed into place).

Usage: python3 tests/engines/tiny_model.py [--dest DIR]   (prints the model directory)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

VERSION = "1"
HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 64, 128, 2, 4, 2, 16
VOCAB_TARGET = 512
LM_HEAD_SCALE = 50.0
SEED = 20261127
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = """\
A gateway sits between the programs that ask questions and the models that answer them. It listens on one
address, reads the name of the model a request asks for, and sends the request to the place that serves
that name: a local engine started on demand, or a cloud service reached over the network. When a local
model is cold the gateway starts its engine, waits until the engine says it is ready, and only then sends
the request. When nobody has asked for a model for a while, the gateway stops its engine again and gives
the memory back to the machine.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. How vexingly quick
daft zebras jump. Sphinx of black quartz, judge my vow. The five boxing wizards jump quickly.
Beautiful is better than ugly. Explicit is better than implicit. Simple is better than complex. Complex is
better than complicated. Flat is better than nested. Sparse is better than dense. Readability counts.
Special cases are not special enough to break the rules, although practicality beats purity. Errors
should never pass silently, unless explicitly silenced. In the face of ambiguity, refuse the temptation to
guess. There should be one, and preferably only one, obvious way to do it. Now is better than never,
although never is often better than right now. If the implementation is hard to explain, it is a bad
idea. If the implementation is easy to explain, it may be a good idea.
Hello! How are you today? I am fine, thank you. What is the capital of France? Paris is the capital of
France. Say hello. Hello there. Write a haiku about the sea. Waves fold into foam; the tide keeps its
own counsel; gulls argue with wind. Count to five: one, two, three, four, five. Numbers 0 1 2 3 4 5 6 7 8 9.
user assistant system tool function message content role model stream tokens temperature max_tokens
{"role": "user", "content": "hi"} [1, 2, 3] (a, b) <tag> key=value; path/to/file.py #comment @name $var %
"""


def _tokenizer(dest: Path) -> tuple[int, dict[str, int]]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_TARGET, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([CORPUS] * 4, trainer=trainer)
    tok.save(str(dest / "tokenizer.json"))
    ids = {s: tok.token_to_id(s) for s in SPECIAL}
    return tok.get_vocab_size(), ids


def _write_safetensors(path: Path, tensors: dict) -> None:
    header, offset, blobs = {}, 0, []
    for name, arr in tensors.items():
        data = arr.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def _weights(vocab: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(SEED)

    def w(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    t = {"model.embed_tokens.weight": w(vocab, HIDDEN)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = w(HEADS * HEAD_DIM, HIDDEN)
        t[p + "self_attn.k_proj.weight"] = w(KV_HEADS * HEAD_DIM, HIDDEN)
        t[p + "self_attn.v_proj.weight"] = w(KV_HEADS * HEAD_DIM, HIDDEN)
        t[p + "self_attn.o_proj.weight"] = w(HIDDEN, HEADS * HEAD_DIM)
        t[p + "mlp.gate_proj.weight"] = w(INTERMEDIATE, HIDDEN)
        t[p + "mlp.up_proj.weight"] = w(INTERMEDIATE, HIDDEN)
        t[p + "mlp.down_proj.weight"] = w(HIDDEN, INTERMEDIATE)
        t[p + "input_layernorm.weight"] = np.ones(HIDDEN, np.float32)
        t[p + "post_attention_layernorm.weight"] = np.ones(HIDDEN, np.float32)
    t["model.norm.weight"] = np.ones(HIDDEN, np.float32)
    t["lm_head.weight"] = w(vocab, HIDDEN) * LM_HEAD_SCALE
    return t


def generate(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    vocab, ids = _tokenizer(dest)
    eos, pad = ids["<|im_end|>"], ids["<|endoftext|>"]
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM, "vocab_size": vocab,
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
        "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32",
        "bos_token_id": pad, "eos_token_id": eos, "pad_token_id": pad,
    }
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    (dest / "generation_config.json").write_text(json.dumps({"bos_token_id": pad, "eos_token_id": eos,
                                                             "pad_token_id": pad}, indent=2))
    added = {str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                      "special": True} for s, i in ids.items()}
    (dest / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "bos_token": None, "unk_token": None, "model_max_length": 2048, "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": added, "chat_template": CHAT_TEMPLATE,
    }, indent=2))
    (dest / "special_tokens_map.json").write_text(json.dumps({"eos_token": "<|im_end|>",
                                                              "pad_token": "<|endoftext|>"}, indent=2))
    _write_safetensors(dest / "model.safetensors", _weights(vocab))


def default_dir() -> Path:
    root = Path(os.environ.get("MLXGW_TEST_ENGINES") or Path.home() / ".cache" / "mlxgw-test-engines").expanduser()
    return root / "models" / f"tiny-llama-{VERSION}"


def ensure(dest: Path | None = None) -> Path:
    """The model directory, generated on first use."""
    dest = dest or default_dir()
    if (dest / "model.safetensors").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        generate(tmp)
        try:
            tmp.rename(dest)
        except OSError:  # another process won the race: theirs is identical
            if not (dest / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, help="where to write the model (default: the cache)")
    args = parser.parse_args(argv)
    print(ensure(args.dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
