"""The FastAGI server (`asterbill agi`): admission in the dialplan, the balance announcement
and the calling-card IVR. It tells Asterisk before it dials whether a call may go and for how
long; the AMI listener still bills the call. It reads Redis through the credit engine
(lua/credit.py) and never imports the SQL models.
"""
