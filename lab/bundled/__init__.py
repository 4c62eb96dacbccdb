"""The bundled diffusion LLM's recipe: data from installed packages, masked-diffusion SFT, evaluation."""
