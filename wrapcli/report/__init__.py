"""Reports: the envelope every JSON report shares (versions, inputs, seed, device) and the
schema that documents and checks every key."""
