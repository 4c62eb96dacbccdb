"""Hugging Face Space entry point: build the demo, launch it."""
from app.main import build_demo

demo = build_demo()

if __name__ == "__main__":
    demo.queue().launch()
