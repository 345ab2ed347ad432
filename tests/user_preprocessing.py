"""A user's own TFT preprocessing_fn, as `--preprocessing_fn tests.user_preprocessing:preprocessing_fn`."""

import tensorflow as tf
import tensorflow_transform as tft


def preprocessing_fn(inputs):
    x = tft.sparse_tensor_to_dense_with_shape(inputs["x"], [None, 1], default_value=0.0)[:, 0]
    s = tft.sparse_tensor_to_dense_with_shape(inputs["s"], [None, 1], default_value="")[:, 0]
    return {
        "x_centered": x - tft.mean(x),
        "s_id": tft.compute_and_apply_vocabulary(s, vocab_filename="user_s"),
    }


not_callable = 42
