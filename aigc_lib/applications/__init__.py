"""Small, runnable versions of the applications of generative models (the applications chapter).

* :mod:`~aigc_lib.applications.digits`: a typed number rendered as handwritten digits by the
  conditional GAN, and read back by the book's classifier (a miniature "text-to-image");
* :mod:`~aigc_lib.applications.repair`: inpainting (filling a masked region) and denoising with a
  trained VAE or GAN as the prior;
* :mod:`~aigc_lib.applications.melody`: rule-based melodies and note tokens (the tiny GPT over
  them is :class:`aigc_lib.zoo.MelodyGPT`), and :mod:`~aigc_lib.applications.sound`: a sine/ADSR
  synthesizer and WAV files;
* :mod:`~aigc_lib.applications.video`: latent walks rendered as frames and written as an animated GIF.
"""
