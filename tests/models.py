"""Tiny locally built models and model directories for tests (no downloads)."""

import json

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from wrapcli.models.build import ModelShape, build_config, build_model
from wrapcli.tasks import vocab
from wrapcli.tasks.sequences import seq_len

# Every architecture wrapcli reads (wrapcli/models/adapters.py LAYOUTS; test_layers keeps them
# equal). Mistral and Qwen2 share Llama's layout and adapter, so their rows run in the slow
# tier; a test that leaves one out says why (``archs``).
ARCHS = ("gpt2", "llama", "gpt_neox", "mistral", "qwen2")
LLAMA_COUSINS = ("mistral", "qwen2")
BUILT_IN = "the built-in models (wrapcli/models/build.py build_config) are GPT-2 or Llama"


def archs(**left_out: str) -> list:
    """ARCHS as pytest parameters, without the architectures named (each with its reason);
    Mistral and Qwen2 are marked slow."""
    import pytest

    assert set(left_out) <= set(ARCHS) and all(left_out.values()), left_out
    return [pytest.param(a, marks=pytest.mark.slow) if a in LLAMA_COUSINS else a for a in ARCHS if a not in left_out]


def built_in_archs() -> list:
    return archs(gpt_neox=BUILT_IN, mistral=BUILT_IN, qwen2=BUILT_IN)


def tiny(arch="gpt2", text_len=48, seed=0):
    """A 2-layer, width-32 synthetic-task model of ``arch``."""
    return build_model(build_config(ModelShape(arch, 2, 2, 32), vocab.VOCAB_SIZE, seq_len(text_len)), seed)


def tiny_hf(arch="gpt2", vocab_size=100, seed=0):
    """A tiny third-party-style causal LM with its own vocabulary size (stock configs,
    dropout included, as a third party would ship them)."""
    torch.manual_seed(seed)
    if arch == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=2))
    if arch == "gpt_neox":
        return GPTNeoXForCausalLM(GPTNeoXConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=64,
        ))
    if arch == "mistral":
        return MistralForCausalLM(MistralConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, sliding_window=None,
        ))
    if arch == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        ))
    assert arch == "llama", arch
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    ))


# -- third-party-style directories with a word-level tokenizer, and JSONL records --
WORDS = "red green blue cyan pink gold gray jade".split()
PAIRS = {w: WORDS[(i + 3) % len(WORDS)] for i, w in enumerate(WORDS)}


def make_model_dir(path, arch="gpt2", seed=0):
    """A tiny causal LM directory with a word-level tokenizer (no downloads)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[EOS]", "maps", "to", *WORDS, "once", "upon"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")
    tiny_hf(arch, vocab_size=len(vocab), seed=seed).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def as_records(ck, task: str, n: int, seed: int = 0) -> list[dict]:
    """The built-in evaluation examples of ``task`` as text: the prompt up to <ans>, the
    answer token after a space."""
    from wrapcli.tasks import vocab
    from wrapcli.tasks.checks import task_for
    from wrapcli.tasks.sequences import eval_batch

    spec = task_for(ck, task).replace(seed=seed)
    batch = eval_batch(spec, spec.eval_components()[0], n, None)
    return [{"prompt": " ".join(vocab.TOKENS[i] for i in row[: batch.answer_pos + 1]),
             "answer": " " + vocab.TOKENS[a]} for row, a in zip(batch.tokens, batch.answer)]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# -- a known edit of one MLP output projection --
MLP_OUT = {"gpt2": "transformer.h.1.mlp.c_proj.weight", "llama": "model.layers.1.mlp.down_proj.weight",
           "gpt_neox": "gpt_neox.layers.1.mlp.dense_4h_to_h.weight", "mistral": "model.layers.1.mlp.down_proj.weight",
           "qwen2": "model.layers.1.mlp.down_proj.weight"}


def rank1_edit(model, arch, scale=0.05):
    w = dict(model.named_parameters())[MLP_OUT[arch]]
    g = torch.Generator().manual_seed(1)
    u, v = torch.randn(w.shape[0], 1, generator=g), torch.randn(1, w.shape[1], generator=g)
    with torch.no_grad():
        w += scale * u @ v


# A 2-layer, 2-head compiled (Tracr-architecture) counter over inputs of 4 letters, with
# random weights: what the compiled code paths need, without Tracr.
COMPILED_LABELS = ["count_a:0", "count_a:1", "count_a:2", "count_a:3", "count_a:4", "one", "tokens:BOS", "tokens:a",
                   "tokens:b", "tokens:c", "tokens:compiler_pad"]


def _compiled_spec():
    from wrapcli.compiled.model import CompiledSpec

    return CompiledSpec(
        program="counter", n_layers=2, n_heads=2, d_head=3, d_mlp=7, d_model=len(COMPILED_LABELS), max_len=4,
        causal=False, input_vocab=["BOS", "a", "b", "c", "compiler_pad"], bos="BOS", pad="compiler_pad",
        output_name="count_a", output_values=[0, 1, 2, 3, 4], residual_labels=COMPILED_LABELS)


COMPILED_SPEC = _compiled_spec()


def tiny_compiled(seed=0):
    """COMPILED_SPEC's model with N(0, 1) weights (the readout stays the one-hot one)."""
    from wrapcli.compiled.model import build

    torch.manual_seed(seed)
    model = build(COMPILED_SPEC)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape))
    return model.eval()
