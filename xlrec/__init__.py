"""xlrec: sequential recommendation experiments (xLSTM vs SASRec, BERT4Rec, GRU4Rec, LSTM)."""

__version__ = "0.1.0"
