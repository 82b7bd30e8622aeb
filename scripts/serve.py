"""Serve a checkpoint over HTTP: `python scripts/serve.py ckpt_path=<ckpt> port=8000` (Rasa NLU's
POST /model/parse for a slot tagger, POST /generate for a char LM, GET /health)."""

from seqmodels.commands.serve import main

if __name__ == "__main__":
    main()
