"""mmctl, the operator's CLI; owns the control protocol (protocol.py) the trader serves."""
