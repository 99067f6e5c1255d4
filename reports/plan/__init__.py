"""Capacity planning: from stored records to "which hardware, how many, at what cost".

catalog (hardware specs), costmodel (operators' FLOPs and bytes, roofline),
priors (cited efficiencies for spec-sheet-only projections), calibration
(efficiencies from measured records, tiers and bands), queueing (the server
batcher as a discrete-event simulation), fleet (counts and costs), render.
"""
