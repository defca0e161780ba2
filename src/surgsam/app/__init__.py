"""``surgsam app`` (a local web app to click through a video) and ``surgsam live`` (tracking a
camera, stream or file in real time).

One module per concern: :mod:`.video` (upload checks, frame access by index), :mod:`.prompts`
(clicks and boxes per object and frame), :mod:`.jobs` (model choice, segmentation runs, mask
zip, overlay video; no UI), :mod:`.server` (the Gradio UI), :mod:`.live` (the real-time loop),
:mod:`.live_gui` (the OpenCV window), :mod:`.cli` (both subcommands).

Gradio, PyAV and OpenCV are imported only when used: ``pip install 'surgsam[demo]'``.
"""
