"""score stage: new users assigned between retrains by the published segmenter."""
