"""From a claim to the end-to-end gain: claims, the replay, projections, comparisons."""
