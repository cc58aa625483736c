# A third-party audit as a Makefile: the original and the fine-tuned Hugging Face directories
# in, audit.md out, with the relearning curve. Every step is one wrapcli command; make
# reruns only what changed.
#
#   make -f examples/third-party.mk BASE=original/ TUNED=tuned/ RECORDS=capitals.jsonl \
#        RELEARN=other-capitals.jsonl LABELS=truth.jsonl CONTROL=never-knew/ OUT=audit
#
# RECORDS: prompt/answer JSONL of the capability the fine-tune seems to have removed (scored
#   by eval and compare, pruned against, and held out while relearning).
# RELEARN: prompt/answer JSONL of *other* records of the same kind: the relearning attack
#   fine-tunes on these and watches RECORDS come back (Hu et al. 2024; Lucki et al. 2024).
# LABELS: text/label JSONL for the probes (add "group" to keep paired records together).
# CONTROL: a model trained identically that never had the capability (e.g. the base
#   fine-tuned on unrelated data); relearning must beat it for the verdict to count it.
WRAPCLI ?= wrapcli
OUT ?= audit
LR ?= 1e-5
STEPS ?= 100
BATCH ?= 8
SEEDS ?= 3
PRUNE_K ?= 0,1,5,10,20,50
DEVICE ?= auto
PLOT ?=
CONTROL ?=
RUN := $(WRAPCLI)

.PHONY: all clean
all: $(OUT)/audit.md

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

$(OUT)/audit.md: $(OUT)/eval-base.json $(OUT)/eval-tuned.json $(OUT)/probe.json $(OUT)/prune.json $(OUT)/relearn.json
	$(RUN) compare $(BASE) $(TUNED) --task $(RECORDS) --reports $(OUT)/probe.json --reports $(OUT)/prune.json \
		--reports $(OUT)/relearn.json --device $(DEVICE) -q --markdown $@ -o $(OUT)/audit.json

clean:
	rm -rf $(OUT)
