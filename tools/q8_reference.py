#!/usr/bin/env python3
"""Independent check of `--quantize q8` (a development tool, not part of peft4j; needs numpy and a CPU PyTorch).

Runs one 512-token sequence of random token ids through
  * the plain-PyTorch Gemma 3 of ../shared/tools/torch_gemma3.py, with float weights and with every 2-D weight (the linears,
    the embedding = the tied output head) quantized exactly as llama.cpp's quantize_row_q8_0_ref (blocks of 32, d = amax/127
    stored as fp16, q = roundf(x / d), half away from zero),
  * `peft4j forward` with float weights and with `--quantize q8`,
and prints the top-1 agreement, the mean KL divergence and the logit noise of each pair. peft4j's q8 must match the
PyTorch Q8_0 to float rounding (the same quantized weights), and its agreement with float must equal PyTorch's: then the
agreement figure is the format's, not the engine's. Also splits the noise between the layers and the embedding/head.

  python3 tools/q8_reference.py MODEL_DIR [WORK_DIR] [--shared ../shared]
"""
import argparse, os, subprocess, sys
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument('model'); ap.add_argument('work', nargs='?', default='/tmp')
ap.add_argument('--shared', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared'))
ap.add_argument('--tokens', type=int, default=512)
a = ap.parse_args()
sys.path.insert(0, os.path.join(a.shared, 'tools'))
import torch, st, torch_gemma3 as tg

torch.set_num_threads(os.cpu_count() or 2)
T = a.tokens
rng = np.random.default_rng(7)
ids = np.concatenate([[2], rng.integers(3, 20000, T - 1)]).astype(np.int32)[None]
st.save({'input_ids': ids}, f'{a.work}/q8ref-ids.safetensors')
c = tg.load_cfg(f'{a.model}/config.json')
W = tg.load_st(f'{a.model}/model.safetensors')


def q8_0(w):
    r, k = w.shape
    b = w.reshape(r, k // 32, 32).float()
    d = b.abs().amax(-1, keepdim=True) / 127
    v = b * torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    q = torch.sign(v) * torch.floor(v.abs() + 0.5)   # roundf; bf16 weights make exact halves common
    return (q * d.half().float()).reshape(r, k)


def run(weights):
    m = tg.Gemma3(weights, c, torch.float32, max_pos=T + 8)
    with torch.no_grad():
        return m.forward(ids=torch.from_numpy(ids).long())[0].numpy()


def compare(x, y, name):
    lx = x - x.max(-1, keepdims=True); lx -= np.log(np.exp(lx).sum(-1, keepdims=True))
    ly = y - y.max(-1, keepdims=True); ly -= np.log(np.exp(ly).sum(-1, keepdims=True))
    kl = (np.exp(lx) * (lx - ly)).sum(-1)
    d = y - x; d -= d.mean(-1, keepdims=True)
    print(f'{name:48s} top-1 agreement {(x.argmax(-1) == y.argmax(-1)).mean() * 100:6.2f}% of {len(x)}, mean KL {kl.mean():.3e},'
          f' logit noise {np.sqrt((d ** 2).mean()):.3e}, max |diff| {np.abs(y - x).max():.3e}', flush=True)


tf = run(W)
Wq = {k: (q8_0(v) if v.dim() == 2 else v) for k, v in W.items()}
tq = run(Wq)
top2 = np.sort(tf, -1)[:, -2:]
print(f'float model: median gap between the two largest logits {np.median(top2[:, 1] - top2[:, 0]):.4f}')
compare(tf, tq, 'PyTorch float vs PyTorch Q8_0')
E = 'model.embed_tokens.weight'
compare(tf, run({**W, E: Wq[E]}), 'PyTorch float vs Q8_0 embedding/head only')
compare(tf, run({**Wq, E: W[E]}), 'PyTorch float vs Q8_0 layers only')
peft4j = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'peft4j')
out = {}
for q in ['', 'q8']:
    f = f'{a.work}/q8ref-logits-{q or "float"}.safetensors'
    subprocess.run([peft4j, 'forward', '--model', a.model, '--input-ids', f'{a.work}/q8ref-ids.safetensors', '--output', f]
                   + (['--quantize', q] if q else []), check=True, stdout=subprocess.DEVNULL)
    out[q] = st.load(f)['logits'][0]
compare(tf, out[''], 'PyTorch float vs peft4j float (parity)')
compare(tq, out['q8'], 'PyTorch Q8_0 vs peft4j q8 (same weights?)')
compare(out[''], out['q8'], 'peft4j float vs peft4j q8')
