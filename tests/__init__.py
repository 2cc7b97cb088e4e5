"""Tests for the policy-qa service."""
