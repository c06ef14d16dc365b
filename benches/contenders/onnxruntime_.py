"""The "onnxruntime" contender: ONNX Runtime's GRU operator, GRU forward in float32 only (registered
where onnx and onnxruntime are installed: pip install ".[bench]")."""
import numpy as np

from .base import Unsupported

__all__ = ["OnnxRuntime"]


class OnnxRuntime:
    """ONNX Runtime's `GRU` operator (CPU), SPEC §4's fastest known CPU RNN inference engine: the GRU
    forward only (the RNN and training raise Unsupported).

    The graph is built in memory with onnx.helper: one GRU node with linear_before_reset=1 (PyTorch's
    reset_after GRU), X (T, B, I) and initial_h (1, B, H) as graph inputs, the weights as initializers
    in ONNX's layout: W (1, 3H, I), R (1, 3H, H), B (1, 6H) = [Wb, Rb], gate rows in ONNX's order
    z, r, h (PyTorch's are r, z, n). Outputs Y (T, 1, B, H) and Y_h (1, B, H). The session runs with
    intra_op_num_threads = the thread count, inter_op_num_threads = 1, sequential execution, every
    graph optimization, denormals as zero."""

    slow = False
    memory = False  # no training step

    def setup(self, threads):
        import onnx
        import onnxruntime

        self.threads = threads
        return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__, "threads": threads}

    @staticmethod
    def model(w_ih, w_hh, b_ih, b_hh, opset=14):
        """The ONNX model (onnx.ModelProto) of one GRU layer with PyTorch's weights (rows r, z, n)."""
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        H = w_hh.shape[1]
        I = w_ih.shape[1]
        order = np.r_[H:2 * H, 0:H, 2 * H:3 * H]  # PyTorch r, z, n -> ONNX z, r, h
        elem = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}[w_ih.dtype]
        inits = [
            numpy_helper.from_array(np.ascontiguousarray(w_ih[order][None]), "W"),
            numpy_helper.from_array(np.ascontiguousarray(w_hh[order][None]), "R"),
            numpy_helper.from_array(np.concatenate([b_ih[order], b_hh[order]])[None], "B"),
        ]
        node = helper.make_node("GRU", ["X", "W", "R", "B", "", "initial_h"], ["Y", "Y_h"],
                                hidden_size=H, linear_before_reset=1)
        graph = helper.make_graph(
            [node], "fastrnn_gru_forward",
            [helper.make_tensor_value_info("X", elem, ["T", "B", I]),
             helper.make_tensor_value_info("initial_h", elem, [1, "B", H])],
            [helper.make_tensor_value_info("Y", elem, ["T", 1, "B", H]),
             helper.make_tensor_value_info("Y_h", elem, [1, "B", H])],
            initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        onnx.checker.check_model(model)
        return model

    def session(self, model):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = getattr(self, "threads", 1)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.set_denormal_as_zero", "1")
        return ort.InferenceSession(model.SerializeToString(), sess_options=opts,
                                    providers=["CPUExecutionProvider"])

    def build(self, w, inputs):
        if w.cell != "gru":
            raise Unsupported("ONNX Runtime: only the GRU is benchmarked (SPEC §4)")
        if w.phase != "fwd":
            raise Unsupported("ONNX Runtime: inference only, no training")
        if w.dtype != "float32":  # the model builds, but running it fails: "does not support double yet"
            raise Unsupported(f"ONNX Runtime: its CPU GRU kernel is float32 only, not {w.dtype}")
        sess = self.session(self.model(*inputs[2:6]))
        feeds = {"X": inputs.x, "initial_h": inputs.h0[None]}
        return lambda: sess.run(None, feeds)

