"""The networks, by name (`jaxlottery.models.registry`): `cifar_resnet_<depth>[_<width>]`
(OpenLTH's CIFAR ResNet; ResNet-20 is `cifar_resnet_20`, the paper's), `cifar_vgg_<depth>
[_<width>]` (VGG-11/13/16/19 with BatchNorm), `wrn_<depth>_<k>` (wide ResNets) and
`mnist_lenet_<width>[_<width>...]` (fully connected; the lottery-ticket paper's LeNet-300-100)
and `cifar_conv_<2|4|6>` (that paper's Conv-2/4/6).

    model = models.get("cifar_resnet_20")      # model.description: "ResNet-20 width 16"
    variables = models.init(key, "cifar_resnet_20", num_classes=10)
    logits = models.create("cifar_resnet_20").apply(variables, images)

Parameters are plain nested dicts; conv and dense weights are named `kernel`, which is what
`jaxlottery.masks` prunes by default. Images are NHWC float32. Every module of this package
that registers a family is imported here: a new family is one new file."""

from __future__ import annotations

import importlib
import pkgutil

from jaxlottery.models.registry import (COMPUTE_DTYPES, FAMILIES, Family, Model, apply, create,
                                        get, init, register, syntaxes)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from jaxlottery.models.cifar_resnet import CifarResNet, resnet  # noqa: E402 - registered above
from jaxlottery.models.layers import kaiming_normal  # noqa: E402

__all__ = ["COMPUTE_DTYPES", "FAMILIES", "CifarResNet", "Family", "Model", "apply", "create",
           "get", "init", "kaiming_normal", "register", "resnet", "syntaxes"]
