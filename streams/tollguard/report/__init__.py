"""Offline analysis for the fraud analyst: backtest inputs, metrics and the HTML report."""
