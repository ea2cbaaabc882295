"""Export a run in every format and print size (estimated / measured), time and max |logit diff| against
base + adapter loaded through peft (fp32). Usage: python benchmarks/export_figures.py RUN [OUT_ROOT]"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from lorastudio.export.exporter import ExportRequest, export
from lorastudio.export.origin import resolve_source
from lorastudio.export.staging import human_size
from lorastudio.models.resolve import resolve_model_path

MESSAGES = [{"role": "user", "content": "What colour is the sky?"}]


def logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


def main() -> None:
    run = sys.argv[1]
    root = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="studio-export-figures-"))
    source = resolve_source(run)
    base_path = resolve_model_path(source.recipe.model)
    tokenizer = AutoTokenizer.from_pretrained(source.adapter_dir)
    ids = tokenizer.apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).eval()
    reference = logits(PeftModel.from_pretrained(base, str(source.adapter_dir)).eval(), ids)
    cases = [
        ("adapter", "f16", "auto"),
        ("merged", "f16", "float32"),
        ("merged", "f16", "auto"),
        ("gguf", "f16", "auto"),
        ("gguf", "q8_0", "auto"),
        ("gguf", "q4_0", "auto"),
    ]
    print(
        f"{'format':8} {'quant/dtype':12} {'estimated':>10} {'measured':>10} {'seconds':>8} {'max|dlogit|':>12}"
    )
    for fmt, quant, dtype in cases:
        out = root / f"{fmt}-{quant if fmt == 'gguf' else dtype}"
        result = export(ExportRequest(run, fmt, quant=quant, out=out, force=True, dtype=dtype))
        if fmt == "adapter":
            diff = None
        elif fmt == "merged":
            diff = (
                logits(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval(), ids) - reference
            )
        else:
            name = next(f for f in result.files if f.endswith(".gguf"))
            model = AutoModelForCausalLM.from_pretrained(out, gguf_file=name, dtype=torch.float32).eval()
            diff = logits(model, ids) - reference
        shown = "-" if diff is None else f"{diff.abs().max().item():.2e}"
        print(
            f"{fmt:8} {quant if fmt == 'gguf' else dtype:12} {human_size(result.estimated_bytes):>10} "
            f"{human_size(result.measured_bytes):>10} {result.seconds:8.1f} {shown:>12}",
            flush=True,
        )


if __name__ == "__main__":
    main()
