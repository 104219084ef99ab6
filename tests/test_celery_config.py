from docground.settings import Settings
from docground.workers.celery_app import GPU_QUEUE, make_celery


def test_workers_keep_the_real_stdout_and_ack_late():
    app = make_celery(Settings(broker_url="redis://127.0.0.1:1/0"))
    # In-process vLLM calls sys.stdout.fileno(); Celery's logging proxy has none (seen on the GPU machine).
    assert app.conf.worker_redirect_stdouts is False
    assert app.conf.task_acks_late is True and app.conf.task_reject_on_worker_lost is True
    assert GPU_QUEUE in {q.name for q in app.conf.task_queues}
