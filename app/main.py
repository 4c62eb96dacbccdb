"""The whole demo: one Blocks with a tab per paper."""
import gradio as gr


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="dLLM Decoding Explorer & UDS Selection Lab") as demo:
        gr.Markdown("# dLLM Decoding Explorer & UDS Selection Lab\nThe tabs are being built.")
    return demo
