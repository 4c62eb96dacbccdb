"""The whole demo: one Blocks with a tab per paper, and how it is served."""
import gradio as gr

from app.decoding_tab import build_decoding_tab
from app.selection_tab import build_selection_tab


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="dLLM Decoding Explorer & UDS Selection Lab") as demo:
        gr.Markdown("# dLLM Decoding Explorer & UDS Selection Lab\n"
                    "**Decoding Explorer**: watch a diffusion LLM decode under LLaDA's fixed steps, Fast-dLLM's "
                    "threshold and CreditDecoding, step by step. **Selection Lab**: SFT a small LM with UDS online "
                    "batch selection and see which samples were picked and why.")
        with gr.Tab("Decoding Explorer"):
            build_decoding_tab()
        with gr.Tab("Selection Lab"):
            build_selection_tab()
    return demo


def launch(demo: gr.Blocks, **kwargs) -> None:
    """Serve with a bounded queue; events set their own concurrency (one GPU job, a few CPU ones)."""
    demo.queue(default_concurrency_limit=2, max_size=64).launch(show_error=False, max_file_size="50mb", **kwargs)
