"""The whole demo: one Blocks with a tab per paper, and how it is served."""
import gradio as gr

from app import session_files
from app.decoding_tab import build_decoding_tab
from app.selection_tab import build_selection_tab


def build_demo() -> gr.Blocks:
    # Gradio's cache (uploads, files given to the page) is aged out on the janitor's period (app/session_files.py).
    with gr.Blocks(title="dLLM Decoding Explorer & UDS Selection Lab",
                   delete_cache=(session_files.SWEEP_SECONDS, session_files.MAX_AGE_SECONDS)) as demo:
        gr.Markdown("# dLLM Decoding Explorer & UDS Selection Lab\n"
                    "**Decoding Explorer**: watch a diffusion LLM decode under LLaDA's fixed steps, Fast-dLLM's "
                    "threshold and CreditDecoding, step by step. **Selection Lab**: SFT a small LM with UDS online "
                    "batch selection and see which samples were picked and why.")
        with gr.Tab("Decoding Explorer"):
            build_decoding_tab()
        with gr.Tab("Selection Lab"):
            build_selection_tab()
        demo.unload(session_files.end_session)
    return demo


def launch(demo: gr.Blocks, **kwargs) -> None:
    """Serve with a bounded queue; events set their own concurrency (one GPU job, a few CPU ones); start the janitor
    of temporary files (this app's session folders and its files in Gradio's cache)."""
    session_files.start_janitor(lambda: [name for files in demo.temp_file_sets for name in list(files)])
    demo.queue(default_concurrency_limit=2, max_size=64).launch(show_error=False, max_file_size="50mb", **kwargs)
