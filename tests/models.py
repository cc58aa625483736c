"""Tiny locally built models for tests (no downloads)."""

import torch
from transformers import (
    GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM,
)

from wrapcli.models import ModelShape, build_config, build_model
from wrapcli.tasks import vocab
from wrapcli.tasks.sequences import seq_len


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
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    ))
