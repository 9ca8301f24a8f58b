"""The ONNX operators TensorRT's ONNX parser supports: data for :mod:`flare.export.trt_ops`.

Transcribed from the operator table of onnx-tensorrt's ``docs/operators.md`` (the rows
marked supported, default ONNX domain) at the commit NVIDIA/TensorRT's ``release/10.16``
branch pins as its ``parsers/onnx`` submodule (TensorRT 10.16 OSS release, 2026-03-25).
The TensorRT 11.1 table (pinned by ``release/11.1``) is the same plus ``Swish``, so a graph
that passes this one parses on both; an older TensorRT 10 (JetPack 6 ships 10.3) lacks a
few recent rows (Attention, RMSNormalization, RotaryEmbedding, TensorScatter, the window
ops and STFT), which our exporters do not emit. The table's restrictions that we check in
code are in :func:`flare.export.trt_ops._refusal`.
"""

SOURCE = ("onnx-tensorrt docs/operators.md at 6bde6596 (pinned by NVIDIA/TensorRT release/10.16), "
          "TensorRT 10.16; 11.1's table adds Swish only")

SUPPORTED = frozenset({
    'Abs', 'Acos', 'Acosh', 'Add', 'And', 'ArgMax', 'ArgMin', 'Asin', 'Asinh', 'Atan', 'Atanh', 'Attention',
    'AveragePool', 'BatchNormalization', 'BlackmanWindow', 'Cast', 'CastLike', 'Ceil', 'Celu', 'Clip', 'Concat',
    'Constant', 'ConstantOfShape', 'Conv', 'ConvTranspose', 'Cos', 'Cosh', 'CumSum', 'DeformConv',
    'DepthToSpace', 'DequantizeLinear', 'Div', 'Dropout', 'Einsum', 'Elu', 'Equal', 'Erf', 'Exp', 'Expand',
    'EyeLike', 'Flatten', 'Floor', 'GRU', 'Gather', 'GatherElements', 'GatherND', 'Gelu', 'Gemm',
    'GlobalAveragePool', 'GlobalLpPool', 'GlobalMaxPool', 'Greater', 'GreaterOrEqual', 'GridSample',
    'GroupNormalization', 'HammingWindow', 'HannWindow', 'HardSigmoid', 'HardSwish', 'Hardmax', 'Identity',
    'If', 'ImageScaler', 'InstanceNormalization', 'IsInf', 'IsNaN', 'LRN', 'LSTM', 'LayerNormalization',
    'LeakyRelu', 'Less', 'LessOrEqual', 'Log', 'LogSoftmax', 'Loop', 'LpNormalization', 'LpPool', 'MatMul',
    'Max', 'MaxPool', 'Mean', 'MeanVarianceNormalization', 'Min', 'Mish', 'Mod', 'Mul', 'Neg',
    'NonMaxSuppression', 'NonZero', 'Not', 'OneHot', 'Or', 'PRelu', 'Pad', 'ParametricSoftplus', 'Pow',
    'QuantizeLinear', 'RMSNormalization', 'RNN', 'RandomNormal', 'RandomNormalLike', 'RandomUniform',
    'RandomUniformLike', 'Range', 'Reciprocal', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp',
    'ReduceMax', 'ReduceMean', 'ReduceMin', 'ReduceProd', 'ReduceSum', 'ReduceSumSquare', 'Relu', 'Reshape',
    'Resize', 'ReverseSequence', 'RoiAlign', 'RotaryEmbedding', 'Round', 'STFT', 'ScaledTanh', 'Scan',
    'Scatter', 'ScatterElements', 'ScatterND', 'Selu', 'Shape', 'Shrink', 'Sigmoid', 'Sign', 'Sin', 'Sinh',
    'Size', 'Slice', 'Softmax', 'Softplus', 'Softsign', 'SpaceToDepth', 'Split', 'Sqrt', 'Squeeze', 'Sub',
    'Sum', 'Tan', 'Tanh', 'TensorScatter', 'ThresholdedRelu', 'Tile', 'TopK', 'Transpose', 'Trilu', 'Unsqueeze',
    'Upsample', 'Where', 'Xor'
})
