@echo off
rem Pensieve: start an install that run_app.bat has already set up (no pip, no network).
rem Usage: quick_start.bat [pensieve serve options, e.g. --port 8080]
setlocal
cd /d "%~dp0"

if exist ".venv\Scripts\python.exe" goto :ready
echo error: Pensieve is not set up yet: run run_app.bat first, it creates .venv and installs everything. 1>&2
exit /b 1

:ready
rem Checks the set-up finished, creates .env and the folders if missing, and the model (instant when present).
".venv\Scripts\python.exe" scripts\bootstrap.py --no-install
if errorlevel 1 exit /b 1

rem ---- Streamlit UI: PLACEHOLDER (start it here as in run_app.bat) -------------------------------

".venv\Scripts\python.exe" -m pensieve serve %*
exit /b %ERRORLEVEL%
