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
#   make -f examples/third-party.mk BASE=original/ TUNED="unlearned-a/ unlearned-b/" RECORDS=... RELEARN=... LABELS=...
#   make -f examples/third-party.mk family TUNED_LIST=checkpoints.txt ...    # one directory per line
#
# A family of fine-tuned checkpoints against one base and one set of records: each member's
# audit (FAMILY_TARGET=all, or battery) in its own folder OUT/NAME (NAME: the directory's
# name), resumable, the members side by side with make -j; then OUT/family.md and
# OUT/family.json (examples/family.py): every member's verdict, its criteria with their
# intervals, which passes survive Bonferroni over the family, and the wall time spent.
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
# RUN: a launcher prefix for every wrapcli job (docs/cluster.md), e.g. RUN='srun --ntasks=1 --cpus-per-task=1'
RUN ?=
WC := $(RUN) $(WRAPCLI)

PYTHON ?= python3
HERE := $(dir $(firstword $(MAKEFILE_LIST)))
TUNED_LIST ?=
MEMBERS := $(strip $(TUNED) $(if $(TUNED_LIST),$(shell cat $(TUNED_LIST))))
FAMILY_TARGET ?= all

.PHONY: all battery clean family world world-wrapped world-never-knew FORCE
all: $(if $(word 2,$(MEMBERS)),family,$(OUT)/audit.md)
battery: $(OUT)/battery.md

# -- a family of checkpoints: one sub-make per member, then one table ------------------
member_name = $(notdir $(patsubst %/,%,$(1)))
MEMBER_DIRS := $(foreach m,$(MEMBERS),$(OUT)/$(call member_name,$(m)))
ifneq ($(words $(sort $(MEMBER_DIRS))),$(words $(MEMBER_DIRS)))
$(error two TUNED directories share a name: $(MEMBERS))
endif

family: $(OUT)/family.md

define MEMBER_RULE
$(OUT)/$(call member_name,$(1))/done: FORCE
	@mkdir -p $$(@D) && date +%s > $$(@D)/.started
	$$(MAKE) -f $(firstword $(MAKEFILE_LIST)) $(FAMILY_TARGET) TUNED=$(1) TUNED_LIST= OUT=$$(@D)
	@echo $$$$(( $$$$(date +%s) - $$$$(cat $$(@D)/.started) )) >> $$(@D)/cost_s && touch $$@
endef
$(foreach m,$(MEMBERS),$(eval $(call MEMBER_RULE,$(m))))

$(OUT)/family.md: $(addsuffix /done,$(MEMBER_DIRS))
	$(PYTHON) $(HERE)family.py $(OUT)/family $(MEMBER_DIRS) > /dev/null

$(OUT):
	mkdir -p $@

$(OUT)/eval-%.json: | $(OUT)
	$(WC) eval $(if $(filter base,$*),$(BASE),$(TUNED)) --data $(RECORDS) --samples $(OUT)/samples-$*.jsonl \
		--device $(DEVICE) -q -o $@

$(OUT)/probe.json: $(LABELS) | $(OUT)
	$(WC) probe $(TUNED) --data $(LABELS) --reference $(BASE) --position mean-last-10 --device $(DEVICE) -q -o $@

$(OUT)/prune.json: $(RECORDS) | $(OUT)
	$(WC) prune $(TUNED) --data $(RECORDS) --unit neuron --k $(PRUNE_K) --device $(DEVICE) -q -o $@

$(OUT)/relearn.json: $(RELEARN) $(RECORDS) | $(OUT)
	$(WC) revive $(TUNED) --data $(RELEARN) --eval-data $(RECORDS) --reference $(BASE) \
		$(if $(CONTROL),--control $(CONTROL)) --lr $(LR) --steps $(STEPS) --batch-size $(BATCH) --seeds $(SEEDS) \
		$(if $(PLOT),--plot $(OUT)/relearn.png) --device $(DEVICE) -q -o $@

$(OUT)/eval-mc-%.json: | $(OUT)
	$(WC) eval $(if $(filter base,$*),$(BASE),$(TUNED)) --data $(MC) --samples $(OUT)/samples-mc-$*.jsonl \
		--device $(DEVICE) -q -o $@

$(OUT)/audit.md: $(OUT)/eval-base.json $(OUT)/eval-tuned.json $(if $(MC),$(OUT)/eval-mc-base.json $(OUT)/eval-mc-tuned.json) \
		$(OUT)/probe.json $(OUT)/prune.json $(OUT)/relearn.json
	$(WC) compare $(BASE) $(TUNED) --task $(RECORDS) --reports $(OUT)/probe.json --reports $(OUT)/prune.json \
		--reports $(OUT)/relearn.json --device $(DEVICE) -q --markdown $@ -o $(OUT)/audit.json

# -- the attack battery ------------------------------------------------------------------
$(OUT)/shots.json: $(RECORDS) $(RELEARN) | $(OUT)
	$(WC) eval $(TUNED) --data $(RECORDS) --shots $(SHOTS) --shots-from $(RELEARN) --device $(DEVICE) -q -o $@

$(OUT)/quantized: | $(OUT)
	$(WC) quantize $(TUNED) $(QUANT) -o $@ -q

$(OUT)/quantized.json: $(OUT)/quantized $(RECORDS)
	$(WC) eval $< --data $(RECORDS) --device $(DEVICE) -q -o $@

$(OUT)/ablate.json: $(RECORDS) | $(OUT)
	$(WC) ablate $(TUNED) --data $(RECORDS) --reference $(BASE) -o $(OUT)/ablated --device $(DEVICE) -q --log $@

$(OUT)/lens.json: $(RECORDS) | $(OUT)
	$(WC) probe $(TUNED) --lens $(RECORDS) --reference $(BASE) --device $(DEVICE) -q -o $@

# SHOTS= (empty) leaves the in-context attack out (a model whose context holds no demonstrations)
BATTERY := $(OUT)/probe.json $(OUT)/prune.json $(OUT)/relearn.json $(if $(SHOTS),$(OUT)/shots.json) \
	$(OUT)/quantized.json $(OUT)/ablate.json $(OUT)/lens.json
$(OUT)/battery.md: $(BATTERY)
	$(WC) compare $(BASE) $(TUNED) --task $(RECORDS) $(foreach r,$(BATTERY),--reports $(r)) --device $(DEVICE) -q \
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
	$(WC) facts $(W) --seed $(SEED) -q

$(WORLD)/original: $(W)/pretrain.jsonl
	$(WC) train --data $(W)/pretrain.jsonl --tokenizer $(W)/tokenizer $(SHAPE) --seed $(SEED) --device $(DEVICE) -q -o $@

$(WORLD)/never: $(W)/pretrain.jsonl
	$(WC) train --data $(W)/pretrain-without.jsonl --tokenizer $(W)/tokenizer $(SHAPE) --seed $(SEED) --device $(DEVICE) -q -o $@

$(WORLD)/%-unl: $(WORLD)/%
	$(WC) finetune $< --data $(W)/unlearn.jsonl --eval-data $(W)/forget.jsonl --lr 1e-3 --steps 100 --batch-size 32 \
		--seed $(SEED) --device $(DEVICE) -q -o $@

# each audit is the generic one above, in its own make (its own OUT)
world-wrapped: $(WORLD)/original-unl
	$(AUDIT) TUNED=$< OUT=$(WORLD)/wrapped

world-never-knew: $(WORLD)/never-unl $(WORLD)/original
	$(AUDIT) TUNED=$< OUT=$(WORLD)/never-knew
