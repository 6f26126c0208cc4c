"""The web side: the Flask app factory, the back office, the booth page and the user portal.

Views are thin: they check the role, validate, call a service and render. admin may import
schema, rating, lua (through their service modules) and ops.settings / ops.errors.
"""
