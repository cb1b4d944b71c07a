"""The organism: claimkit's own small model, pretrained from scratch on a generated corpus.

`claimkit.organism.corpus` generates the text from the templates in `fixtures/corpus/`;
the tokenizer, pretraining and `ensure_organism` live in sibling modules. Nothing is
imported here, so importing the package stays cheap.
"""
