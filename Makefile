# Shortcuts for the README's commands (dev.py needs only python3).
.PHONY: demo test setup canvas
demo:
	python3 dev.py demo
test:
	python3 dev.py test
setup:
	python3 dev.py setup
canvas:
	python3 dev.py canvas
