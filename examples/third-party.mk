# A third-party audit as a Makefile: the original and the fine-tuned Hugging Face directories
# in, audit.md out, with the relearning curve. Every step is one wrapcli command; make
# reruns only what changed.
#
#   make -f examples/third-party.mk BASE=original/ TUNED=tuned/ RECORDS=capitals.jsonl \
#        RELEARN=other-capitals.jsonl LABELS=truth.jsonl OUT=audit
#
# RECORDS: prompt/answer or multiple-choice JSONL of the capability the fine-tune seems to
#   have removed (scored by eval and compare, pruned against, and held out while
#   relearning). Add records of the same kind that the original model does not know (e.g.
#   fictitious entities): relearning's accuracy on them is the floor the held-out records
#   must beat when there is no control (docs/verdicts.md).
# RELEARN: records of the same kind, *not* in RECORDS: the relearning attack fine-tunes on
#   these and watches RECORDS come back (Hu et al. 2024; Deeb & Roger 2024).
# LABELS: text/label JSONL for the probes (add "group" to keep paired records together).
# CONTROL (optional): a model trained identically that never had the capability; with it
#   the floor is that model's accuracy after the same relearning.
# MC (optional): multiple-choice JSONL of the same capability, evaluated too.
#
#   make -f examples/third-party.mk battery BASE=original/ TUNED=tuned/ RECORDS=... RELEARN=... LABELS=...
#
# The whole attack battery on one model: the audit above plus in-context examples (SHOTS
# solved RELEARN records before each question), 4-bit NF4 quantization, directional
# ablation (the direction the fine-tune added, from BASE) and the logit lens, every attack
# weighed by compare against its floor: $(OUT)/battery.md and $(OUT)/battery.json.
#
#   make -f examples/third-party.mk world SEED=0
#
# The same audit on a world of synthetic facts where the truth is known (wrapcli facts):
# a small Llama trained from scratch on the facts (original), one trained on everything
# but the forget set (never), each "unlearned" by fine-tuning it to answer " unknown" on
# the forget set. The audit must call the first wrapped and not the second, with no
# control checkpoint: world/wrapped/audit.md and world/never-knew/audit.md.
WRAPCLI ?= wrapcli
OUT ?= audit
LR ?= 1e-6,1e-5,1e-4
STEPS ?= 100
BATCH ?= 8
SEEDS ?= 3
PRUNE_K ?= 0,1,5,10,20,50
DEVICE ?= auto
PLOT ?=
CONTROL ?=
MC ?=
SHOTS ?= 0,3,8
QUANT ?= --scheme nf4
RUN := $(WRAPCLI)

.PHONY: all battery clean world world-wrapped world-never-knew
all: $(OUT)/audit.md
battery: $(OUT)/battery.md

$(OUT):
	mkdir -p $@

$(OUT)/eval-%.json: | $(OUT)
	$(RUN) eval $(if $(filter base,$*),$(BASE),$(TUNED)) --data $(RECORDS) --samples $(OUT)/samples-$*.jsonl \
		--device $(DEVICE) -q -o $@

$(OUT)/probe.json: $(LABELS) | $(OUT)
	$(RUN) probe $(TUNED) --data $(LABELS) --reference $(BASE) --position mean-last-10 --device $(DEVICE) -q -o $@

$(OUT)/prune.json: $(RECORDS) | $(OUT)
	$(RUN) prune $(TUNED) --data $(RECORDS) --unit neuron --k $(PRUNE_K) --device $(DEVICE) -q -o $@

$(OUT)/relearn.json: $(RELEARN) $(RECORDS) | $(OUT)
	$(RUN) revive $(TUNED) --data $(RELEARN) --eval-data $(RECORDS) --reference $(BASE) \
		$(if $(CONTROL),--control $(CONTROL)) --lr $(LR) --steps $(STEPS) --batch-size $(BATCH) --seeds $(SEEDS) \
		$(if $(PLOT),--plot $(OUT)/relearn.png) --device $(DEVICE) -q -o $@

$(OUT)/eval-mc-%.json: | $(OUT)
	$(RUN) eval $(if $(filter base,$*),$(BASE),$(TUNED)) --data $(MC) --samples $(OUT)/samples-mc-$*.jsonl \
		--device $(DEVICE) -q -o $@

$(OUT)/audit.md: $(OUT)/eval-base.json $(OUT)/eval-tuned.json $(if $(MC),$(OUT)/eval-mc-base.json $(OUT)/eval-mc-tuned.json) \
		$(OUT)/probe.json $(OUT)/prune.json $(OUT)/relearn.json
	$(RUN) compare $(BASE) $(TUNED) --task $(RECORDS) --reports $(OUT)/probe.json --reports $(OUT)/prune.json \
		--reports $(OUT)/relearn.json --device $(DEVICE) -q --markdown $@ -o $(OUT)/audit.json

# -- the attack battery ------------------------------------------------------------------
$(OUT)/shots.json: $(RECORDS) $(RELEARN) | $(OUT)
	$(RUN) eval $(TUNED) --data $(RECORDS) --shots $(SHOTS) --shots-from $(RELEARN) --device $(DEVICE) -q -o $@

$(OUT)/quantized: | $(OUT)
	$(RUN) quantize $(TUNED) $(QUANT) -o $@ -q

$(OUT)/quantized.json: $(OUT)/quantized $(RECORDS)
	$(RUN) eval $< --data $(RECORDS) --device $(DEVICE) -q -o $@

$(OUT)/ablate.json: $(RECORDS) | $(OUT)
	$(RUN) ablate $(TUNED) --data $(RECORDS) --reference $(BASE) -o $(OUT)/ablated --device $(DEVICE) -q --log $@

$(OUT)/lens.json: $(RECORDS) | $(OUT)
	$(RUN) probe $(TUNED) --lens $(RECORDS) --reference $(BASE) --device $(DEVICE) -q -o $@

# SHOTS= (empty) leaves the in-context attack out (a model whose context holds no demonstrations)
BATTERY := $(OUT)/probe.json $(OUT)/prune.json $(OUT)/relearn.json $(if $(SHOTS),$(OUT)/shots.json) \
	$(OUT)/quantized.json $(OUT)/ablate.json $(OUT)/lens.json
$(OUT)/battery.md: $(BATTERY)
	$(RUN) compare $(BASE) $(TUNED) --task $(RECORDS) $(foreach r,$(BATTERY),--reports $(r)) --device $(DEVICE) -q \
		--markdown $@ -o $(OUT)/battery.json

clean:
	rm -rf $(OUT)

# -- the truth study on synthetic facts ------------------------------------------------
WORLD ?= world
SEED ?= 0
SHAPE := --arch llama --layers 2 --heads 4 --d-model 64 --steps 1500 --batch-size 32 --lr 3e-3
W := $(WORLD)/data
AUDIT = $(MAKE) -f $(firstword $(MAKEFILE_LIST)) WRAPCLI="$(WRAPCLI)" DEVICE=$(DEVICE) BASE=$(WORLD)/original \
	RECORDS=$(W)/heldout.jsonl RELEARN=$(W)/relearn.jsonl LABELS=$(W)/probe.jsonl MC=$(W)/heldout-mc.jsonl \
	LR=1e-4,1e-3,3e-3 STEPS=30 BATCH=16 SEEDS=3 CONTROL= PLOT=$(PLOT)

world: world-wrapped world-never-knew

$(W)/pretrain.jsonl:
	mkdir -p $(WORLD)
	$(RUN) facts $(W) --seed $(SEED) -q

$(WORLD)/original: $(W)/pretrain.jsonl
	$(RUN) train --data $(W)/pretrain.jsonl --tokenizer $(W)/tokenizer $(SHAPE) --seed $(SEED) --device $(DEVICE) -q -o $@

$(WORLD)/never: $(W)/pretrain.jsonl
	$(RUN) train --data $(W)/pretrain-without.jsonl --tokenizer $(W)/tokenizer $(SHAPE) --seed $(SEED) --device $(DEVICE) -q -o $@

$(WORLD)/%-unl: $(WORLD)/%
	$(RUN) finetune $< --data $(W)/unlearn.jsonl --eval-data $(W)/forget.jsonl --lr 1e-3 --steps 100 --batch-size 32 \
		--seed $(SEED) --device $(DEVICE) -q -o $@

# each audit is the generic one above, in its own make (its own OUT)
world-wrapped: $(WORLD)/original-unl
	$(AUDIT) TUNED=$< OUT=$(WORLD)/wrapped

world-never-knew: $(WORLD)/never-unl $(WORLD)/original
	$(AUDIT) TUNED=$< OUT=$(WORLD)/never-knew
