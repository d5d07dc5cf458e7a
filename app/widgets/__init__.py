"""Reusable dashboard pieces shared by several pages."""
