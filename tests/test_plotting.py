import matplotlib
import pytest
import torch

from aigc_lib.plotting import image_grid, loss_curves, scatter_2d

matplotlib.use("Agg")


def test_image_grid_labels():
    fig = image_grid(torch.rand(10, 1, 28, 28), nrow=5, titles=[str(i) for i in range(10)],
                     row_labels=["a", "b"], title="t")
    assert len(fig.axes) == 10 and fig.axes[3].get_title() == "3"


def test_image_grid_bad_shape():
    with pytest.raises(ValueError, match="images"):
        image_grid(torch.rand(2, 5, 4, 4, 4))
    with pytest.raises(ValueError, match="titles"):
        image_grid(torch.rand(2, 4, 4), titles=["x"])


def test_curves_and_scatter():
    ax = loss_curves({"G": [3, 2, 1], "D": [1, 1, 1]}, smooth=2)
    assert len(ax.lines) == 2
    ax = scatter_2d({"data": torch.randn(10, 2)}, lim=3)
    assert ax.get_xlim() == (-3, 3)
    with pytest.raises(ValueError, match="N x 2"):
        scatter_2d({"bad": torch.randn(10, 3)})


def test_timeline_rows_and_whole_year_labels():
    from aigc_lib.plotting import timeline

    ax = timeline([(2022.9, "ChatGPT", "t"), (2014, "GAN", "a")], title="x")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["2022  ChatGPT", "2014  GAN"] or set(labels) == {"2014  GAN", "2022  ChatGPT"}
    with pytest.raises(ValueError):
        timeline([])
