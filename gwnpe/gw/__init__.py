"""Physics: frequency domain, priors, waveforms, detector projection, noise, reduced basis, strain
files and bilby likelihoods. Nothing here reads a config file or writes a stage output."""
