"""MOAProfiler model: 5-channel EfficientNet-B0, training, and embedding."""
